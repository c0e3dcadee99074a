//! One message to the webhook: `POST {"content": …}`, Discord's 429
//! (`retry_after` in the JSON body, else the `Retry-After` header) and
//! 5xx retried within the budget, other 4xx reported at once. The URL
//! holds the webhook's token: no error or log line carries it.

use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// Discord's limit on `content`.
pub const MAX_CONTENT: usize = 2000;

/// What became of the message.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Sent { tries: u32 },
    Failed { tries: u32, error: String },
}

/// The JSON body: the text (cut to Discord's 2000 characters) and no
/// mentions, so a VM name or an error text cannot ping anyone.
pub fn body(content: &str) -> String {
    let mut text: String = content.chars().take(MAX_CONTENT).collect();
    if content.chars().count() > MAX_CONTENT {
        text.pop();
        text.push('…');
    }
    serde_json::json!({
        "content": text,
        "allowed_mentions": {"parse": []},
    })
    .to_string()
}

/// Seconds to wait from a 429: the body's `retry_after` (seconds, may be
/// fractional), else the `Retry-After` header, else 1.
pub fn retry_after(body: &str, header: Option<&str>) -> f64 {
    let from_body = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("retry_after").and_then(|r| r.as_f64()));
    from_body
        .or_else(|| header.and_then(|h| h.trim().parse::<f64>().ok()))
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0)
}

/// Removes the URL (and so its token) from a message.
fn redact(msg: &str, url: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    msg.replace(url, "<webhook>").replace(base, "<webhook>")
}

/// Sends `content` to `url`, retrying as said above.
pub fn send(url: &str, content: &str, limits: &RateLimit) -> Outcome {
    let start = Instant::now();
    let budget = Duration::from_secs_f64(limits.max_wait_secs.min(3600.0));
    let payload = body(content);
    let mut tries = 0;
    loop {
        tries += 1;
        let left = budget.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Outcome::Failed {
                tries: tries - 1,
                error: "no time left for the webhook".into(),
            };
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(left))
            .http_status_as_error(false)
            .user_agent(concat!("exliar-discord/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let res = agent
            .post(url)
            .header("content-type", "application/json")
            .send(payload.as_bytes());
        let (wait, error) = match res {
            Err(e) => {
                let error = format!("cannot reach the webhook: {}", redact(&e.to_string(), url));
                (Some(0.5 * f64::from(tries)), error)
            }
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Outcome::Sent { tries };
                }
                let header = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string);
                let text = resp
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                let short: String = text.chars().take(200).collect();
                let error = format!("the webhook answered HTTP {status}: {}", short.trim());
                match status {
                    429 => (Some(retry_after(&text, header.as_deref())), error),
                    500..=599 => (Some(0.5 * f64::from(tries)), error),
                    _ => (None, error),
                }
            }
        };
        let Some(wait) = wait else {
            return Outcome::Failed { tries, error };
        };
        if tries > limits.max_retries {
            return Outcome::Failed {
                tries,
                error: format!("{error} (gave up after {tries} tries)"),
            };
        }
        let wait = Duration::from_secs_f64(wait.min(3600.0));
        if start.elapsed() + wait >= budget {
            return Outcome::Failed {
                tries,
                error: format!(
                    "{error} (retrying after {:.1} s would pass the {:.1} s limit)",
                    wait.as_secs_f64(),
                    budget.as_secs_f64()
                ),
            };
        }
        tracing::info!("webhook: {error}; retrying in {:.2} s", wait.as_secs_f64());
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after(r#"{"retry_after":0.2}"#, Some("5")), 0.2);
        assert_eq!(retry_after("nope", Some("3")), 3.0);
        assert_eq!(retry_after("", None), 1.0);
        assert_eq!(retry_after(r#"{"retry_after":-1}"#, None), 1.0);
    }

    #[test]
    fn body_is_cut_and_mentions_off() {
        let b: serde_json::Value =
            serde_json::from_str(&body(&"x".repeat(3000))).unwrap_or_default();
        assert_eq!(b["content"].as_str().map(|s| s.chars().count()), Some(2000));
        assert_eq!(b["allowed_mentions"]["parse"], serde_json::json!([]));
    }

    #[test]
    fn redacts_url() {
        let u = "https://discord.com/api/webhooks/1/TOKEN?wait=true";
        assert!(!redact(&format!("x {u} y"), u).contains("TOKEN"));
    }
}
