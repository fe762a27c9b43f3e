//! `usher draw verify <drawId>`: runs `selection/verify-draw` and prints a
//! readable verdict (exit 0 when the draw matches, 1 when it does not).
//!
//! With `--url` it asks a running `usher up` (`POST
//! <url>/invoke/selection/verify-draw`). Otherwise it runs the worker here on
//! the embedded backends of `--data`, with the http-workers serving the
//! services the worker is granted (the Entry Service, the Code Service) on a
//! listener of its own on loopback, as `usher up` would (a
//! `USHER_SERVICE_<NAME>_URL` still wins); no queue or stream is consumed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use usher_backend_embedded::Embedded;
use usher_engine::{Input, LocalInvoker, Output, Runtime};
use usher_trigger_local::HttpListener;

use crate::store_cmds::{tool_engine, Paths};

/// The worker that verifies.
pub const VERIFY_WORKER: &str = "selection/verify-draw";

/// Verifies a draw; whether it matches.
pub async fn verify(
    paths: &Paths,
    draw_id: &str,
    data: &Path,
    url: Option<&str>,
    as_json: bool,
) -> Result<bool> {
    let payload = json!({"drawId": draw_id});
    let answer = match url {
        Some(url) => over_http(url, &payload).await?,
        None => embedded(paths, data, &payload).await?,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", verdict(&answer));
    }
    Ok(answer["matches"] == json!(true))
}

async fn over_http(url: &str, payload: &Value) -> Result<Value> {
    let endpoint = format!("{}/invoke/{VERIFY_WORKER}", url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&endpoint)
        .json(payload)
        .send()
        .await
        .with_context(|| format!("calling {endpoint}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{endpoint} answered {status} without JSON"))?;
    if status.is_success() {
        return Ok(body);
    }
    match (body["errorType"].as_str(), body["message"].as_str()) {
        (Some(kind), Some(message)) => bail!("{VERIFY_WORKER}: {kind}: {message}"),
        _ => bail!("{endpoint} answered {status}: {body}"),
    }
}

async fn embedded(paths: &Paths, data: &Path, payload: &Value) -> Result<Value> {
    let mut registry = paths.registry()?;
    let spec = registry.worker(VERIFY_WORKER)?.clone();
    let socket = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context("binding a loopback listener for the services")?;
    let served = crate::services::point_at_listener(&mut registry, socket.local_addr()?);
    // The worker, and the http-workers serving the services it calls.
    let mut only = vec![VERIFY_WORKER.to_string()];
    only.extend(
        spec.grants
            .services
            .iter()
            .filter_map(|service| served.get(service).cloned()),
    );
    let registry = Arc::new(registry);
    let embedded = Embedded::open(data, &registry.resources)
        .with_context(|| format!("opening the embedded backends in {}", data.display()))?;
    let services = crate::services::http_services(&registry)?;
    let invoker = Arc::new(LocalInvoker::new());
    let backends = embedded.backends(services, Arc::new(usher_codec::HostCodec), invoker.clone());
    let runtime = Arc::new(Runtime::start(
        tool_engine()?,
        registry,
        Arc::new(paths.store()?),
        &paths.env,
        Arc::new(backends),
        Some(&only),
    )?);
    invoker.bind(&runtime);
    let listener = HttpListener::serve(runtime.clone(), socket)?;
    let result = runtime
        .invoke(VERIFY_WORKER, &Input::Invoke(payload.clone()), None)
        .await;
    listener
        .shutdown()
        .await
        .context("stopping the services' listener")?;
    match result {
        Ok(invocation) => match invocation.output {
            Output::Invoke(Ok(answer)) => Ok(answer),
            Output::Invoke(Err(e)) => bail!("{VERIFY_WORKER}: {}: {}", e.kind, e.message),
            other => bail!("{VERIFY_WORKER} answered {other:?}"),
        },
        Err(e) => bail!("{VERIFY_WORKER}: {e}"),
    }
}

/// The answer of `selection/verify-draw` as a few readable lines.
pub fn verdict(answer: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let matches = answer["matches"] == json!(true);
    let rec = &answer["recorded"];
    let now = &answer["recomputed"];
    let sel = &answer["selections"];
    let mut out = format!(
        "draw {} (campaign {}, market {}): {}\n",
        text(&answer["drawId"]),
        text(&answer["campaignId"]),
        text(&answer["marketId"]),
        if matches { "MATCHES" } else { "DOES NOT MATCH" }
    );
    out.push_str(&format!(
        "  rule {}, seed {}, made {}\n",
        text(&rec["rule"]),
        text(&rec["seed"]),
        text(&rec["createdAt"])
    ));
    out.push_str(&format!(
        "  entries       {} now, {} recorded\n",
        text(&now["entries"]),
        text(&rec["entries"])
    ));
    out.push_str(&format!(
        "  verdicts      {} winners, {} waitlisted, {} losers (selection count {}, waitlist count {})\n",
        text(&now["winners"]),
        text(&now["waitlist"]),
        text(&now["losers"]),
        text(&rec["selectionCount"]),
        text(&rec["waitlistCount"])
    ));
    for (name, key) in [
        ("input digest ", "inputDigest"),
        ("result digest", "resultDigest"),
    ] {
        let same = now[key] == rec[key];
        out.push_str(&format!(
            "  {name} {} {}\n",
            text(&now[key]),
            if same {
                "(= recorded)".to_string()
            } else {
                format!("(recorded {})", text(&rec[key]))
            }
        ));
    }
    if sel.is_object() {
        out.push_str(&format!(
            "  selections    {} of {} saved, {} agree, {} disagree; {} winners' codes checked against the reservations\n",
            text(&sel["saved"]),
            text(&sel["expected"]),
            text(&sel["agree"]),
            text(&sel["disagree"]),
            text(&sel["codesChecked"])
        ));
    }
    if let Some(differences) = answer["differences"].as_array().filter(|d| !d.is_empty()) {
        out.push_str("  differences:\n");
        for d in differences {
            out.push_str(&format!("    - {}\n", text(d)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_reads_well() {
        let answer = json!({
            "drawId": "c1.m1", "campaignId": "c1", "marketId": "m1", "matches": false,
            "recorded": {"rule": "usher-draw-v1", "seed": "s", "createdAt": "2026-12-06T10:00:00Z",
                         "entries": 10, "selectionCount": 3, "waitlistCount": 1,
                         "inputDigest": "aa", "resultDigest": "bb"},
            "recomputed": {"entries": 11, "winners": 3, "waitlist": 1, "losers": 7,
                           "inputDigest": "ac", "resultDigest": "bb"},
            "selections": {"expected": 11, "saved": 0, "agree": 0, "disagree": 0, "codesChecked": 0},
            "differences": ["10 entries recorded, 11 in the Entry Service now"],
        });
        let text = verdict(&answer);
        assert!(
            text.starts_with("draw c1.m1 (campaign c1, market m1): DOES NOT MATCH\n"),
            "{text}"
        );
        assert!(text.contains("input digest  ac (recorded aa)"), "{text}");
        assert!(text.contains("result digest bb (= recorded)"), "{text}");
        assert!(
            text.contains("    - 10 entries recorded, 11 in the Entry Service now\n"),
            "{text}"
        );
        assert!(text.contains("0 of 11 saved"), "{text}");
    }
}
