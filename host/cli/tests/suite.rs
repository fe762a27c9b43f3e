//! The `usher` binary's tests, one module per file (`cli.rs`, `up.rs`,
//! `e2e_presale.rs` …), in one test binary: one build and one link
//! instead of one per file (each file used to be its own binary, with its
//! own copy of `common`). Run one file's tests with
//! `cargo nextest run --release -p usher-cli --test suite e2e_presale::`.

mod aws;
mod common;

mod cli;
mod dlq_demo;
mod e2e_archive;
mod e2e_aws;
mod e2e_aws_presale;
mod e2e_data_pipeline;
mod e2e_exports;
mod e2e_faults;
mod e2e_notify;
mod e2e_poison;
mod e2e_presale;
mod e2e_racing;
mod e2e_restart;
mod e2e_swap;
mod e2e_upsert_users;
mod observe;
mod operator_page;
mod up;
mod up_schedule;
mod watch;
mod workflows;
