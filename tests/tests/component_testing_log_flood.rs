//! testing/log-flood: a hostile worker's output is bounded and never traps
//! it: log lines are cut to MAX_LOG_LINE_BYTES, an invocation logs at most
//! MAX_LOG_BYTES_PER_INVOCATION (then one line says how many were dropped),
//! and stdout/stderr are captured within MAX_GUEST_OUTPUT_BYTES.

use serde_json::{json, Value};
use usher_capabilities::limits::{
    MAX_GUEST_OUTPUT_BYTES, MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LINE_BYTES,
};
use usher_engine::{Input, InvokeError, Output};
use usher_testing::{components, TestError, TestHost};

fn host() -> TestHost {
    TestHost::builder()
        .worker(&components::TESTING_LOG_FLOOD, "trigger: { invoke: {} }")
        .build()
        .expect("test host")
}

/// The recorded log lines: (message, bytes of message and fields).
fn logged(host: &TestHost) -> Vec<(String, usize)> {
    host.calls("log", "write")
        .iter()
        .map(|c| {
            let message = c.request["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let fields: usize = c.request["fields"]
                .as_array()
                .map(|fs| {
                    fs.iter()
                        .filter_map(Value::as_array)
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::len)
                        .sum()
                })
                .unwrap_or(0);
            let bytes = message.len() + fields;
            (message, bytes)
        })
        .collect()
}

#[tokio::test]
async fn a_log_and_stderr_flood_succeeds_within_the_caps() {
    let host = host();
    let payload = json!({"lines": 2000, "line_bytes": 65536, "stderr_bytes": 1 << 20});
    let out = host
        .invoke("testing/log-flood", Input::Invoke(payload))
        .await
        .expect("the flood does not trap the worker");
    assert_eq!(
        out.output,
        Output::Invoke(Ok(json!({"lines": 2000, "stderr_bytes": 1 << 20})))
    );

    let lines = logged(&host);
    let (marker, written) = lines.split_last().expect("lines were logged");
    // Every line written was cut to the line cap, and says by how much.
    let cut = format!("…[truncated {} bytes]", 65536 - MAX_LOG_LINE_BYTES);
    for (message, bytes) in written {
        assert!(
            message.ends_with(&cut),
            "{}",
            &message[message.len() - 40..]
        );
        assert!(*bytes <= MAX_LOG_LINE_BYTES + cut.len(), "{bytes}");
    }
    // The volume stays within the invocation's cap (the marker aside) …
    let volume: usize = written.iter().map(|(_, b)| b).sum();
    assert!(volume <= MAX_LOG_BYTES_PER_INVOCATION, "{volume}");
    assert!(volume > MAX_LOG_BYTES_PER_INVOCATION - (MAX_LOG_LINE_BYTES + cut.len()));
    // … and one line at the end says how many were dropped.
    let dropped = 2000 - written.len();
    assert!(
        marker.0.starts_with(&format!(
            "…[dropped {dropped} log lines ({} bytes)",
            dropped * 65536
        )),
        "{}",
        marker.0
    );
    assert_eq!(
        lines
            .iter()
            .filter(|(m, _)| m.contains("…[dropped"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_long_field_is_cut_too() {
    let host = host();
    let payload = json!({"lines": 1, "line_bytes": 10, "field_bytes": 20000});
    host.invoke("testing/log-flood", Input::Invoke(payload))
        .await
        .expect("invocation");
    let lines = logged(&host);
    assert_eq!(lines.len(), 1);
    let cut = 10 + 3 + 20000 - MAX_LOG_LINE_BYTES;
    assert_eq!(
        lines[0].0,
        format!("{}…[truncated {cut} bytes]", "l".repeat(10))
    );
    assert_eq!(
        lines[0].1,
        MAX_LOG_LINE_BYTES + format!("…[truncated {cut} bytes]").len()
    );
}

#[tokio::test]
async fn a_trap_after_a_stderr_flood_shows_the_start_and_the_panic() {
    let host = host();
    let payload = json!({"stderr_bytes": 1 << 20, "panic": true});
    let err = host
        .invoke("testing/log-flood", Input::Invoke(payload))
        .await
        .expect_err("the worker panics");
    let TestError::Invoke(InvokeError::Trap { guest_output, .. }) = err else {
        panic!("expected a trap, got {err}");
    };
    assert!(
        guest_output.len() <= MAX_GUEST_OUTPUT_BYTES + 64,
        "{}",
        guest_output.len()
    );
    assert!(guest_output.starts_with("eeee"), "{}", &guest_output[..40]);
    assert!(guest_output.contains("…[truncated "), "no marker");
    assert!(
        guest_output.contains("log-flood: the panic asked for, after the flood"),
        "{}",
        &guest_output[guest_output.len() - 400..]
    );
    // The host keeps serving.
    let out = host
        .invoke("testing/log-flood", Input::Invoke(json!({})))
        .await
        .expect("next invocation");
    assert_eq!(
        out.output,
        Output::Invoke(Ok(json!({"lines": 0, "stderr_bytes": 0})))
    );
}
