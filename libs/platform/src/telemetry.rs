//! Tracing set-up: JSON (or pretty) logs, an OpenTelemetry tracer exporting over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and W3C trace-context propagation on gRPC metadata.
use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::TelemetrySettings;

/// Flushes spans on drop; keep it alive for the life of the process.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {e}");
        }
    }
}

/// Installs the global subscriber, tracer and propagator. Call once, first thing in `main`.
pub fn init(service: &str, settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    global::set_text_map_propagator(TraceContextPropagator::new());

    let resource = Resource::builder()
        .with_service_name(format!("loyalty-{service}"))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        // The exporter reads the endpoint and headers from the standard OTEL_* variables.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(format!("loyalty-{service}"));

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    if settings.log_format == "pretty" {
        registry
            .with(tracing_subscriber::fmt::layer().with_target(false))
            .try_init()?;
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?;
    }
    Ok(TelemetryGuard { provider })
}

/// The trace id of the current span, for error messages and logs ("" outside any trace).
pub fn current_trace_id() -> String {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        String::new()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the trace context in incoming HTTP/2 headers (`traceparent`).
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_current_context(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut MetadataInjector(metadata)));
}

/// The W3C `traceparent` of the current span, stored with outbox events ("" if none).
pub fn current_traceparent() -> String {
    let mut md = tonic::metadata::MetadataMap::new();
    inject_current_context(&mut md);
    md.get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn an_incoming_traceparent_continues_into_outgoing_calls_and_events() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "traceparent",
                format!("00-{trace_id}-00f067aa0ba902b7-01")
                    .parse()
                    .unwrap(),
            );
            let span = tracing::info_span!("grpc");
            set_parent_from_headers(&span, &headers);
            let _entered = span.enter();
            assert_eq!(current_trace_id(), trace_id);
            let outgoing = current_traceparent();
            assert!(
                outgoing.starts_with(&format!("00-{trace_id}-")),
                "{outgoing}"
            );
            assert!(
                !outgoing.contains("00f067aa0ba902b7"),
                "a new span id for this hop"
            );
        });
    }
}
