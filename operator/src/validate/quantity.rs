//! Kubernetes memory quantities as the spec gives them, and the data plane's in-flight budget derived from one.

use otlp_lb_config::Limits;

use crate::crd::LoadBalancerSpec;

/// Half the data plane container's memory limit, in MiB (at least 16), for request data in flight;
/// the data plane's default when there is no limit.
pub fn memory_budget_mib(lb: &LoadBalancerSpec) -> u32 {
    let limit = lb
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .and_then(|q| quantity_bytes(&q.0));
    match limit {
        Some(bytes) => u32::try_from(bytes / 2 / (1 << 20)).unwrap_or(u32::MAX).max(16),
        None => Limits::default().memory_limit_mib,
    }
}

/// Bytes of a Kubernetes memory quantity such as `512Mi`, `1Gi`, `500M` or `1073741824`.
pub fn quantity_bytes(quantity: &str) -> Option<u64> {
    let quantity = quantity.trim();
    let split = quantity.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    // Truncation is intended: budgets are whole bytes.
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}
