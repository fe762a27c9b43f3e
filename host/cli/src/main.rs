//! `usher`: push, promote, roll back and list worker components; invoke a
//! worker once on the embedded backends; pin freshly built components; run
//! every worker with `usher up`; inspect and replay dead-letter queues
//! (`usher dlq`); run a demo of `usher-demo` (`usher demo replication`);
//! verify a draw (`usher draw verify`).

mod archive;
mod demo;
mod dlq;
mod draw;
mod invoke;
mod lambda;
mod metrics;
mod ops;
mod provision;
mod services;
mod status;
mod store_cmds;
mod terraform;
mod up;
mod watch;
mod workflow;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Usher: event-driven workers as WebAssembly components.
#[derive(Parser)]
#[command(name = "usher", version, about)]
struct Cli {
    /// The registry folder (worker YAML files and resources.yaml).
    #[arg(long, global = true, env = "USHER_REGISTRY", default_value = "workers")]
    registry: PathBuf,
    /// The component store: a folder, or `s3://bucket/prefix` for push,
    /// promote, rollback, ls and `usher lambda`.
    #[arg(
        long,
        global = true,
        env = "USHER_STORE",
        default_value = ".usher/store"
    )]
    store: PathBuf,
    /// The release environment.
    #[arg(long, global = true, env = "USHER_ENV", default_value = "dev")]
    env: String,
    /// The workflows folder (`*.asl.json`, `schedules.yaml`) `usher up`
    /// runs (default: `workflows` beside the registry folder).
    #[arg(long, global = true, env = "USHER_WORKFLOWS")]
    workflows: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Uploads a component for a worker as a new version (checked against
    /// the worker's registry entry, and precompiled).
    Push {
        /// The worker, e.g. `replication/save-entries`.
        worker: String,
        /// The component file.
        file: PathBuf,
        /// The version to record it as.
        #[arg(long)]
        version: semver::Version,
    },
    /// Makes a pushed version the live one.
    Promote {
        /// The worker.
        worker: String,
        /// The version.
        version: semver::Version,
    },
    /// Makes the previously live version live again.
    Rollback {
        /// The worker.
        worker: String,
    },
    /// Lists workers, their versions and digests, and which is live.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Runs one invocation on the embedded backends and prints the result JSON.
    Invoke {
        /// The worker.
        worker: String,
        /// The event file (JSON).
        #[arg(long)]
        event: PathBuf,
        /// The data folder of the embedded backends.
        #[arg(long, env = "USHER_DATA", default_value = ".usher/data")]
        data: PathBuf,
        /// Items to put into tables first: a JSON file `{"<table>": [item, …]}`.
        #[arg(long)]
        seed: Option<PathBuf>,
    },
    /// Stores every built component of a folder (`<domain>/<worker>.wasm`)
    /// and pins the registry's entries to their digests.
    Pin {
        /// The folder `just build-components` fills.
        #[arg(long, default_value = "build/components")]
        from: PathBuf,
        /// The components' sources (their Cargo.toml versions are the versions pinned).
        #[arg(long, default_value = "components")]
        sources: PathBuf,
    },
    /// Runs every worker on the embedded backends: queue pollers, stream
    /// followers, schedules, the HTTP listener (routes, invoke and resolver
    /// endpoints), change-log trimming, hot swap; a summary every 2 s on
    /// stderr; Ctrl-C finishes the batches in flight and stops. With
    /// USHER_KAFKA_BROKERS set, events go to that Kafka cluster instead of
    /// the embedded event log (TLS client certificate: the JSON file
    /// USHER_KAFKA_CERT_FILE, `{"cert_pem","key_pem","ca_pem"}`; its expiry
    /// is checked at start-up).
    Up {
        /// The data folder of the embedded backends.
        #[arg(long, env = "USHER_DATA", default_value = ".usher/data")]
        data: PathBuf,
        /// The HTTP listener's address.
        #[arg(long, env = "USHER_LISTEN", default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Serve `POST /dev/token`, which signs JWTs for the routes that
        /// declare `auth` (with their HMAC key). Development only: never
        /// on a shared host; `usher lambda` has no such endpoint.
        #[arg(long)]
        dev_tokens: bool,
    },
    /// Rebuilds a worker's component whenever its source folder
    /// (`<components>/<component name>`) changes, pushes it as a new version
    /// (`<version>-watch.N`) and promotes it: a running `usher up` on the same
    /// store and environment hot swaps it. A failed build shows cargo's
    /// errors and the live version keeps serving.
    Watch {
        /// The worker, e.g. `replication/save-entries`.
        worker: String,
        /// The components' cargo workspace.
        #[arg(long, default_value = "components")]
        components: PathBuf,
        /// The components' cargo target dir (default
        /// `$USHER_CACHE/components-target`, the justfile's).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Build, push and promote once, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Serves one worker as an AWS Lambda function (lambda_runtime): the
    /// environment names it (USHER_WORKER, USHER_STORE, USHER_ENV,
    /// USHER_REGISTRY, USHER_RELEASE_CHECK_SECS, USHER_MIRROR).
    Lambda,
    /// Creates the registry's resources on AWS (tables with streams, queues
    /// with redrive policies, topics with subscriptions, buckets), with the
    /// configuration `usher lambda` uses (the AWS chain plus
    /// USHER_AWS_ENDPOINT_URL, USHER_<SERVICE>_ENDPOINT_URL,
    /// USHER_RESOURCE_PREFIX, USHER_RESOURCE_NAMES); what exists is left as
    /// it is.
    Provision {
        /// Every queue's visibility timeout in seconds, over the registry's.
        #[arg(long)]
        visibility_timeout: Option<u32>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Generates the AWS deployment's Terraform (HCL) from the registry and
    /// the workflows folder: a function, an IAM role (only what the grants
    /// name) and a trigger per worker, the tables, queues, topics, buckets,
    /// schedules and state machines (see the usher-terraform crate).
    Terraform {
        /// The folder to write (its other `*.tf` files are removed).
        #[arg(long, default_value = "terraform")]
        out: PathBuf,
        /// Write nothing; exit 1 when the folder differs from what the
        /// registry generates (drift).
        #[arg(long)]
        check: bool,
    },
    /// Dead-letter queues: list them and their messages, replay them.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Draws of the selection domain: `usher draw verify <drawId>`.
    Draw {
        #[command(subcommand)]
        command: DrawCommand,
    },
    /// Workflows (Step Functions state machines) of a running `usher up`:
    /// start an execution, list executions, show one with its history.
    Workflow {
        #[command(subcommand)]
        command: workflow::WorkflowCommand,
        /// The `usher up` to ask.
        #[arg(
            long,
            global = true,
            env = "USHER_URL",
            default_value = "http://127.0.0.1:8090"
        )]
        url: String,
    },
    /// The change-data archive: `usher archive schemas [--check]` (the
    /// files derived from `schemas/archive/*.json`), `usher archive compact`
    /// (closed days merged into one object per type and day).
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// Demonstrations on the embedded backends (the `usher-demo` crate).
    Demo {
        #[command(subcommand)]
        command: usher_demo::Demo,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Without QUEUE, every dead-letter queue (a queue's `dead_letter`, a
    /// stream's `on_failure`) with its depth; with QUEUE, its messages.
    Ls {
        /// The queue whose messages to list.
        queue: Option<String>,
        /// The data folder of the embedded backends.
        #[arg(long, env = "USHER_DATA", default_value = ".usher/data")]
        data: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Moves every message of a dead-letter queue back to its source queue
    /// (visible at once, receive count reset).
    Replay {
        /// The dead-letter queue.
        queue: String,
        /// The target queue (default: the queue whose `dead_letter` is QUEUE).
        #[arg(long)]
        to: Option<String>,
        /// The data folder of the embedded backends.
        #[arg(long, env = "USHER_DATA", default_value = ".usher/data")]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum DrawCommand {
    /// Recomputes a draw from its record and the Entry Service's entries
    /// (`selection/verify-draw`) and prints the verdict: exit 0 when it
    /// matches, 1 when it does not, 2 when it cannot be verified (no record,
    /// a service down).
    Verify {
        /// The draw (default id of a market's draw: `<campaignId>.<marketId>`).
        draw_id: String,
        /// The data folder of the embedded backends (the worker runs here,
        /// with the services it calls served on a loopback listener).
        #[arg(long, env = "USHER_DATA", default_value = ".usher/data")]
        data: PathBuf,
        /// Ask a running `usher up` instead (e.g. `http://127.0.0.1:8090`).
        #[arg(long)]
        url: Option<String>,
        /// Print the worker's JSON answer instead.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an async command on a fresh multi-threaded runtime.
fn block_on(future: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Logs (USHER_LOG, USHER_LOG_FORMAT) and traces (OTEL_EXPORTER_OTLP_*);
    // dropped at the end of main, which flushes the spans not yet exported.
    let _telemetry = usher_telemetry::init(&telemetry_options(&cli.command)?)?;
    run(cli)
}

/// The telemetry the environment asks for; under `usher lambda`, JSON logs
/// are Lambda's JSON log format (also when Lambda's own
/// `AWS_LAMBDA_LOG_FORMAT=JSON` is set).
fn telemetry_options(command: &Command) -> Result<usher_telemetry::Options> {
    let lambda = matches!(command, Command::Lambda);
    let mut options = usher_telemetry::Options::from_env(lambda)?;
    if lambda
        && std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
    {
        options.format = usher_telemetry::LogFormat::Lambda;
    }
    Ok(options)
}

fn run(cli: Cli) -> Result<()> {
    let paths = store_cmds::Paths {
        registry: cli.registry,
        store: cli.store,
        env: cli.env,
        workflows: cli.workflows,
    };
    match cli.command {
        Command::Push {
            worker,
            file,
            version,
        } => block_on(store_cmds::push(&paths, &worker, &file, &version)),
        Command::Promote { worker, version } => {
            block_on(store_cmds::promote(&paths, &worker, &version))
        }
        Command::Rollback { worker } => block_on(store_cmds::rollback(&paths, &worker)),
        Command::Ls { json } => block_on(store_cmds::ls(&paths, json)),
        Command::Pin { from, sources } => block_on(store_cmds::pin(&paths, &from, &sources)),
        Command::Lambda => block_on(lambda::run(&paths)),
        Command::Provision {
            visibility_timeout,
            json,
        } => block_on(provision::run(&paths, visibility_timeout, json)),
        Command::Invoke {
            worker,
            event,
            data,
            seed,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(invoke::run(&paths, &worker, &event, &data, seed.as_deref()))
        }
        Command::Up {
            data,
            listen,
            dev_tokens,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(up::run(&paths, &data, listen, dev_tokens))
        }
        Command::Terraform { out, check } => terraform::run(&paths, &out, check),
        Command::Dlq { command } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            match command {
                DlqCommand::Ls { queue, data, json } => {
                    rt.block_on(dlq::ls(&paths, &data, queue.as_deref(), json))
                }
                DlqCommand::Replay { queue, to, data } => {
                    rt.block_on(dlq::replay(&paths, &data, &queue, to.as_deref()))
                }
            }
        }
        Command::Draw {
            command:
                DrawCommand::Verify {
                    draw_id,
                    data,
                    url,
                    json,
                },
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let outcome = rt.block_on(draw::verify(&paths, &draw_id, &data, url.as_deref(), json));
            drop(rt);
            match outcome {
                Ok(true) => Ok(()),
                // 1: the draw does not match; 2: it could not be verified.
                Ok(false) => std::process::exit(1),
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    std::process::exit(2)
                }
            }
        }
        Command::Watch {
            worker,
            components,
            target_dir,
            once,
        } => block_on(watch::run(
            &paths,
            watch::WatchArgs {
                worker,
                components,
                target_dir: target_dir.unwrap_or_else(watch::default_target_dir),
                once,
            },
        )),
        Command::Workflow { command, url } => block_on(workflow::run(&url, command)),
        Command::Archive { command } => block_on(archive::run(&paths.registry, command)),
        Command::Demo { command } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(demo::run(&paths, command))
        }
    }
}
