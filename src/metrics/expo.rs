//! The Prometheus text exposition format (version 0.0.4), pure: metric
//! families in, text out.

use std::fmt::Write as _;

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One series: its labels (name, value) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family: a name, its HELP and TYPE, its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &'static str, kind: Kind, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    /// Add a series.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push(Sample { labels, value });
    }

    /// Add a series without labels.
    pub fn with(mut self, value: f64) -> Self {
        self.push(Vec::new(), value);
        self
    }
}

/// A label value or HELP text made safe for the format: `\` `"` and line
/// feeds escaped as it defines (the quote only in label values); other
/// control characters, which a host string may hold and a terminal or a
/// parser should never see raw, become U+FFFD.
fn escape(s: &str, quote: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the format writes it (`+Inf`, `-Inf`, `NaN`).
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Render the families (those without series are left out).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape(f.help, false));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
        for s in &f.samples {
            out.push_str(f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(v, true));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", value(s.value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values_and_help() {
        let mut f = Family::new("exliar_x", Kind::Gauge, "a \\ b\nc \"q\"");
        f.push(vec![("name", "a\"b\\c\nd\u{1b}[31m".into())], 1.0);
        let text = render(&[f]);
        assert_eq!(
            text,
            "# HELP exliar_x a \\\\ b\\nc \"q\"\n# TYPE exliar_x gauge\nexliar_x{name=\"a\\\"b\\\\c\\nd\u{fffd}[31m\"} 1\n"
        );
    }

    #[test]
    fn values_and_empty_families() {
        let c = Family::new("exliar_c_total", Kind::Counter, "c").with(1.5);
        let n = Family::new("exliar_n", Kind::Gauge, "n").with(f64::NAN);
        let i = Family::new("exliar_i", Kind::Gauge, "i").with(f64::INFINITY);
        let e = Family::new("exliar_e", Kind::Gauge, "e");
        let text = render(&[c, n, i, e]);
        assert!(text.contains("# TYPE exliar_c_total counter\nexliar_c_total 1.5\n"));
        assert!(text.contains("exliar_n NaN\n"));
        assert!(text.contains("exliar_i +Inf\n"));
        assert!(!text.contains("exliar_e"));
    }
}
