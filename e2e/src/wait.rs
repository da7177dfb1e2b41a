//! Bounded waiting: poll a check until it is done or a deadline passes, with
//! a timeout error that says what was awaited and the last state seen.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// The outcome of one poll.
pub enum Check<T> {
    /// Finished with a value.
    Done(T),
    /// Not yet; the text describes the current state (for the timeout error).
    Pending(String),
}

/// Polls `check` every `interval` until it returns `Done`, an error (fatal,
/// returned at once), or `timeout` passes (error naming `what` and the last
/// pending state). At most `timeout / interval + 2` polls are made.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>>>,
{
    let start = Instant::now();
    let max_polls = timeout.as_millis() / interval.as_millis().max(1) + 2;
    let mut last = String::from("(not checked yet)");
    for _ in 0..max_polls {
        let remaining = timeout.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining.max(Duration::from_millis(1)), check()).await {
            Ok(Ok(Check::Done(v))) => return Ok(v),
            Ok(Ok(Check::Pending(state))) => last = state,
            Ok(Err(e)) => return Err(e.context(format!("while waiting for {what}"))),
            Err(_) => last = format!("{last} (last check did not finish in time)"),
        }
        if start.elapsed() >= timeout {
            break;
        }
        tokio::time::sleep(interval.min(timeout.saturating_sub(start.elapsed()))).await;
    }
    bail!("timed out after {:.1}s waiting for {what}; last state: {last}", start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_value_or_times_out() {
        let mut n = 0;
        let v = until("three polls", Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            let n = n;
            async move { Ok(if n >= 3 { Check::Done(n) } else { Check::Pending(format!("n={n}")) }) }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);

        let err = until::<(), _, _>("never", Duration::from_millis(30), Duration::from_millis(5), || async {
            Ok(Check::Pending("still pending".into()))
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("never") && err.contains("still pending"), "{err}");
    }
}
