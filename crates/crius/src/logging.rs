//! The daemon's log: level filter and format (`text` or `json`), both replaceable at run time (SIGHUP
//! reload). Colour codes only when stderr is a terminal, so a log file or the journal gets plain text.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00.000000Z  INFO crius::daemon: message key=value`
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

type FilterLayer = reload::Layer<EnvFilter, Registry>;
type Inner = Layered<FilterLayer, Registry>;
type FormatLayer = Box<dyn Layer<Inner> + Send + Sync>;

/// Changes the running daemon's log level and format.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<FormatLayer, Inner>,
}

fn format_layer(format: LogFormat) -> FormatLayer {
    let ansi = std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        ),
        LogFormat::Json => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(JsonLines)
                .with_writer(std::io::stderr),
        ),
    }
}

/// Installs the global subscriber. `level` was checked by config validation.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<LogHandle> {
    let (filter, filter_handle) = reload::Layer::new(EnvFilter::try_new(level)?);
    let (fmt, format_handle) = reload::Layer::new(format_layer(format));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()?;
    Ok(LogHandle {
        filter: filter_handle,
        format: format_handle,
    })
}

impl LogHandle {
    /// Applies a new level and format (SIGHUP).
    pub fn set(&self, level: &str, format: LogFormat) -> Result<(), String> {
        let filter = EnvFilter::try_new(level).map_err(|e| format!("log_level {level:?}: {e}"))?;
        self.filter
            .reload(filter)
            .map_err(|e| format!("log_level: {e}"))?;
        self.format
            .reload(format_layer(format))
            .map_err(|e| format!("log_format: {e}"))
    }
}

/// The `json` format: one object a line, fields flattened beside the message.
struct JsonLines;

#[derive(Default)]
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_string(),
            serde_json::Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let mut obj = serde_json::Map::new();
        obj.insert("timestamp".into(), rfc3339_now().into());
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> =
                scope.from_root().map(|s| s.name().into()).collect();
            obj.insert("spans".into(), spans.into());
        }
        for (k, v) in fields.0 {
            obj.insert(k, v);
        }
        let line = serde_json::Value::Object(obj).to_string();
        writer.write_str(&line)?;
        writer.write_char('\n')
    }
}

/// UTC now as RFC 3339 with microseconds (no time-zone database needed).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_micros())
}

fn rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(
            rfc3339(1_798_761_599, 999_999),
            "2026-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn format_names_parse() {
        #[derive(Deserialize)]
        struct T {
            f: LogFormat,
        }
        let t: T = toml::from_str("f = \"json\"").unwrap();
        assert_eq!(t.f, LogFormat::Json);
        assert!(toml::from_str::<T>("f = \"xml\"").is_err());
    }
}
