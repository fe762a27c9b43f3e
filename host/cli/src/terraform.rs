//! `usher terraform`: the AWS deployment's HCL from the registry and the
//! workflows folder (`usher-terraform`), written or checked for drift.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::store_cmds::Paths;

pub fn run(paths: &Paths, out: &Path, check: bool) -> Result<()> {
    let registry = paths.registry()?;
    let workflows = paths.workflows_dir();
    let files = usher_terraform::generate(&registry, &workflows)
        .context("generating the Terraform from the registry")?;
    if check {
        let drift = usher_terraform::drift(out, &files)?;
        if !drift.is_empty() {
            for line in &drift {
                eprintln!("  {line}");
            }
            bail!(
                "{} differs from the registry ({} file(s)); run `usher terraform --out {}`",
                out.display(),
                drift.len(),
                out.display()
            );
        }
        println!("{}: {} file(s), no drift", out.display(), files.len());
    } else {
        usher_terraform::write(out, &files)?;
        for (name, text) in &files {
            println!(
                "{:<16} {:>6} lines",
                out.join(name).display(),
                text.lines().count()
            );
        }
    }
    Ok(())
}
