//! `usher provision`: creates the registry's resources on AWS (or on the
//! local servers `scripts/servers` starts), with the configuration `usher
//! lambda` uses.

use anyhow::{Context, Result};
use usher_backend_aws::{AwsBackends, ProvisionOptions, Provisioned};

use crate::store_cmds::Paths;

/// Creates every table (with its stream), queue (with its redrive policy),
/// topic (with its subscriptions) and bucket of the registry that does not
/// exist yet, and prints each with its physical name and ARN.
pub async fn run(paths: &Paths, visibility_timeout_s: Option<u32>, as_json: bool) -> Result<()> {
    let registry = paths.registry()?;
    let aws = AwsBackends::from_env(&registry.resources)
        .await
        .context("configuring the AWS backends")?;
    let report = aws
        .provision(
            &registry.resources,
            &ProvisionOptions {
                visibility_timeout_s,
            },
        )
        .await
        .context("provisioning the registry's resources")?;
    let kinds = [
        ("table", &report.tables),
        ("queue", &report.queues),
        ("topic", &report.topics),
        ("bucket", &report.buckets),
    ];
    if as_json {
        let json: serde_json::Map<String, serde_json::Value> = kinds
            .iter()
            .map(|(kind, resources)| {
                let list = resources
                    .iter()
                    .map(|(name, p)| {
                        serde_json::json!({"name": name, "physical": p.physical, "arn": p.arn, "created": p.created})
                    })
                    .collect();
                (format!("{kind}s"), serde_json::Value::Array(list))
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    for (kind, resources) in kinds {
        for (name, p) in resources.iter() {
            println!("{}", line(kind, name, p));
        }
    }
    Ok(())
}

fn line(kind: &str, name: &str, p: &Provisioned) -> String {
    let state = if p.created { "created" } else { "exists " };
    let arn = if p.arn.is_empty() || p.arn == p.physical {
        String::new()
    } else {
        format!("  {}", p.arn)
    };
    format!("{state}  {kind:<6} {name:<28} {}{arn}", p.physical)
}
