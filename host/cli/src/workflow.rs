//! `usher workflow start|ls|show`: the workflows of a running `usher up`,
//! through its listener's `/workflows` routes.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// Starts an execution; prints its id.
    Start {
        /// The workflow (`workflows/<NAME>.asl.json`).
        name: String,
        /// The input (a JSON file; default `{}`).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Wait for the execution to end and print it (exit 1 when it failed).
        #[arg(long)]
        wait: bool,
    },
    /// Lists executions, newest first (of NAME, or of every workflow).
    Ls {
        /// The workflow.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows an execution and its history.
    Show {
        /// The execution id (`<workflow>:<uuid>`).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Value> {
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url} (is `usher up` running there?)"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("GET {url}: the answer is not JSON"))?;
    if !status.is_success() {
        bail!(
            "GET {url}: {status}: {}",
            body["error"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

fn workflow_of(id: &str) -> Result<&str> {
    match id.split_once(':') {
        Some((name, _)) if !name.is_empty() => Ok(name),
        _ => bail!("`{id}` is not an execution id (`<workflow>:<uuid>`)"),
    }
}

pub async fn run(url: &str, command: WorkflowCommand) -> Result<()> {
    let base = url.trim_end_matches('/');
    let client = reqwest::Client::new();
    match command {
        WorkflowCommand::Start { name, input, wait } => {
            let body = match &input {
                Some(file) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    serde_json::from_str::<Value>(&text)
                        .with_context(|| format!("{} is not JSON", file.display()))?;
                    text
                }
                None => "{}".to_string(),
            };
            let target = format!("{base}/workflows/{name}/executions");
            let response = client
                .post(&target)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .with_context(|| format!("POST {target} (is `usher up` running there?)"))?;
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!(
                    "{name}: {status}: {}",
                    answer["error"].as_str().unwrap_or("")
                );
            }
            let id = answer["executionId"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            println!("{id}");
            if wait {
                loop {
                    let d = get(&client, &format!("{target}/{id}")).await?;
                    let status = d["execution"]["status"].as_str().unwrap_or("");
                    if status != "RUNNING" {
                        println!("{}", serde_json::to_string_pretty(&d["execution"])?);
                        if status != "SUCCEEDED" {
                            std::process::exit(1);
                        }
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
            }
        }
        WorkflowCommand::Ls { name, json } => {
            let names: Vec<String> = match name {
                Some(n) => vec![n],
                None => get(&client, &format!("{base}/workflows")).await?["workflows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect(),
            };
            let mut rows = Vec::new();
            for n in names {
                let list = get(&client, &format!("{base}/workflows/{n}/executions")).await?;
                rows.extend(list["executions"].as_array().cloned().unwrap_or_default());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<50} {:<10} {:>5}  ERROR", "EXECUTION", "STATUS", "RUNS");
                for r in rows {
                    println!(
                        "{:<50} {:<10} {:>5}  {}",
                        r["executionId"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                        r["runs"],
                        r["error"].as_str().unwrap_or("")
                    );
                }
            }
        }
        WorkflowCommand::Show { id, json } => {
            let name = workflow_of(&id)?;
            let d = get(&client, &format!("{base}/workflows/{name}/executions/{id}")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let e = &d["execution"];
                println!(
                    "{} {} (runs {})",
                    e["executionId"].as_str().unwrap_or(""),
                    e["status"].as_str().unwrap_or(""),
                    e["runs"]
                );
                println!("input  {}", e["input"]);
                if !e["output"].is_null() {
                    println!("output {}", e["output"]);
                }
                if let Some(err) = e["error"].as_str() {
                    println!("error  {err}: {}", e["cause"].as_str().unwrap_or(""));
                }
                for ev in d["history"].as_array().into_iter().flatten() {
                    println!(
                        "{:>6} {:<20} {:<30} {}",
                        ev["seq"],
                        ev["type"].as_str().unwrap_or(""),
                        ev["state"].as_str().unwrap_or(""),
                        usher_workflows::paths::abbreviate(&ev["data"])
                    );
                }
            }
        }
    }
    Ok(())
}
