//! What SQS and SNS share: message limits, request sizes and per-entry
//! results of batch calls.

use usher_capabilities::{CapError, OutgoingMessage};

use crate::error::from_code;

/// The largest message, body and attributes together, in bytes (SQS and SNS).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The largest batch request, in bytes (SQS and SNS).
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The most entries of one batch request (SQS and SNS).
pub(crate) const MAX_BATCH_ENTRIES: usize = 10;
/// The most attributes of one message (SQS and SNS).
pub(crate) const MAX_ATTRIBUTES: usize = 10;
/// The longest send delay, in seconds (SQS).
pub(crate) const MAX_DELAY_SECONDS: u32 = 900;

/// The size a message counts for against the limits.
pub(crate) fn size(m: &OutgoingMessage) -> usize {
    m.body.len()
        + m.attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + "String".len())
            .sum::<usize>()
}

/// Checks a message against the services' limits, so a bad message fails
/// alone instead of spoiling its batch request.
pub(crate) fn check(m: &OutgoingMessage) -> Result<(), CapError> {
    if size(m) > MAX_MESSAGE_BYTES {
        return Err(CapError::Invalid(format!(
            "message is {} bytes with its attributes; the limit is {MAX_MESSAGE_BYTES}",
            size(m)
        )));
    }
    if let Some(d) = m.delay_seconds {
        if d > MAX_DELAY_SECONDS {
            return Err(CapError::Invalid(format!(
                "delay_seconds {d} is above the limit of {MAX_DELAY_SECONDS}"
            )));
        }
    }
    if m.attributes.len() > MAX_ATTRIBUTES {
        return Err(CapError::Invalid(format!(
            "message has {} attributes; the limit is {MAX_ATTRIBUTES}",
            m.attributes.len()
        )));
    }
    Ok(())
}

/// Checks every message; the valid ones with their positions, ready to be
/// split into requests, and a result slot per message (filled for the
/// invalid ones).
#[allow(clippy::type_complexity)]
pub(crate) fn prepare(
    messages: Vec<OutgoingMessage>,
) -> (
    Vec<Vec<(usize, OutgoingMessage)>>,
    Vec<Option<Result<String, CapError>>>,
) {
    let mut results = vec![None; messages.len()];
    let mut valid = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        match check(&m) {
            Ok(()) => valid.push((i, m)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let chunks = crate::chunks::split(valid, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES, size, |_, _| {
        false
    });
    (chunks, results)
}

/// One result per message of a chunk from a batch call's answer: entry ids
/// are positions in the chunk.
pub(crate) fn results<'a>(
    what: &str,
    chunk: &[(usize, OutgoingMessage)],
    successful: impl Iterator<Item = (&'a str, &'a str)>,
    failed: impl Iterator<Item = (&'a str, bool, &'a str, Option<&'a str>)>,
) -> Vec<(usize, Result<String, CapError>)> {
    let mut out: Vec<Option<Result<String, CapError>>> = vec![None; chunk.len()];
    let slot = |id: &str| id.parse::<usize>().ok().filter(|n| *n < chunk.len());
    for (id, message_id) in successful {
        if let Some(n) = slot(id) {
            out[n] = Some(Ok(message_id.to_string()));
        }
    }
    for (id, sender_fault, code, message) in failed {
        if let Some(n) = slot(id) {
            let text = format!("{what}: {code}: {}", message.unwrap_or(""));
            let e = from_code(code, text.clone()).unwrap_or(if sender_fault {
                CapError::Invalid(text)
            } else {
                CapError::Unavailable(text)
            });
            out[n] = Some(Err(e));
        }
    }
    chunk
        .iter()
        .zip(out)
        .map(|((i, _), r)| {
            (
                *i,
                r.unwrap_or_else(|| {
                    Err(CapError::Fault(format!(
                        "{what}: no result for message {i}"
                    )))
                }),
            )
        })
        .collect()
}
