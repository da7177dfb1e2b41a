//! The three OTLP signals ([`Signal`], defined with the configuration) and the field numbers of the resource →
//! scope → item nesting that routing walks.

pub use otlp_lb_config::Signal;

/// Field numbers shared by every signal's request: `Export*ServiceRequest.resource_* = 1`,
/// `Resource* { resource = 1; scope_* = 2 }`, `Scope* { scope = 1; items = 2 }`.
pub mod fields {
    pub const REQUEST_RESOURCES: u32 = 1;
    pub const RESOURCE: u32 = 1;
    pub const RESOURCE_SCOPES: u32 = 2;
    pub const SCOPE: u32 = 1;
    pub const SCOPE_ITEMS: u32 = 2;
    /// `Resource.attributes` and `InstrumentationScope.attributes`.
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_ATTRIBUTES: u32 = 3;
    pub const KEY_VALUE_KEY: u32 = 1;
    pub const KEY_VALUE_VALUE: u32 = 2;
    pub const ANY_VALUE_STRING: u32 = 1;
    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const LOG_TRACE_ID: u32 = 9;
    pub const LOG_ATTRIBUTES: u32 = 6;
    pub const METRIC_NAME: u32 = 1;
    pub const METRIC_UNIT: u32 = 3;
    pub const METRIC_GAUGE: u32 = 5;
    pub const METRIC_SUM: u32 = 7;
    pub const METRIC_HISTOGRAM: u32 = 9;
    pub const METRIC_EXP_HISTOGRAM: u32 = 10;
    pub const METRIC_SUMMARY: u32 = 11;
    /// `data_points = 1` in Gauge, Sum, Histogram, ExponentialHistogram and Summary.
    pub const DATA_POINTS: u32 = 1;
    /// `attributes` of NumberDataPoint (Gauge, Sum) and SummaryDataPoint.
    pub const NUMBER_POINT_ATTRIBUTES: u32 = 7;
    pub const HISTOGRAM_POINT_ATTRIBUTES: u32 = 9;
    pub const EXP_HISTOGRAM_POINT_ATTRIBUTES: u32 = 1;
    /// Data-point attributes field for each metric data kind, by the Metric field that holds the kind.
    pub fn data_point_attributes(kind: u32) -> Option<u32> {
        match kind {
            METRIC_GAUGE | METRIC_SUM | METRIC_SUMMARY => Some(NUMBER_POINT_ATTRIBUTES),
            METRIC_HISTOGRAM => Some(HISTOGRAM_POINT_ATTRIBUTES),
            METRIC_EXP_HISTOGRAM => Some(EXP_HISTOGRAM_POINT_ATTRIBUTES),
            _ => None,
        }
    }
    /// `Export*ServiceResponse.partial_success = 1`, and its `rejected_* = 1` and `error_message = 2`.
    pub const RESPONSE_PARTIAL_SUCCESS: u32 = 1;
    pub const PARTIAL_SUCCESS_REJECTED: u32 = 1;
    pub const PARTIAL_SUCCESS_ERROR_MESSAGE: u32 = 2;
}
