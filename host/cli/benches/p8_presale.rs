//! P8 end to end (a bench binary, not a timed test): runs `usher demo p8`
//! — the built `usher` binary, on the repository's registry (`workers/`) and
//! component store (`.usher/store`, filled by `just pin`) — which preloads
//! one market of `P8_ENTRIES` entries (default 1,000,000) and its code pool,
//! starts what `usher up` starts in its process, times the draw,
//! save-selections and report-verdicts until every verdict is reported in
//! the Campaign Service's market stats, and verifies the winners
//! (`P8_WINNERS`, default 100,000) and their codes.
//!
//! `just build-components pin && cargo bench --workspace --bench p8_presale`
//! (`P8_ENTRIES=100000 P8_WINNERS=10000` for a smaller run). `cargo test`
//! never runs it.

use std::process::Command;

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // `cargo bench` passes `--bench` (and filters): they are not ours.
    let status = Command::new(env!("CARGO_BIN_EXE_usher"))
        .current_dir(root)
        .args(["demo", "p8"])
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("p8_presale: usher demo p8 failed ({s})");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("p8_presale: cannot run usher: {e}");
            std::process::exit(1);
        }
    }
}
