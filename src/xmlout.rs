//! A small element tree rendered once, with quick-xml's escaping: values
//! are escaped (`<`, `&`, `"`, `'`, `>`), characters XML 1.0 cannot carry
//! become U+FFFD, and a comment can never close itself early. The libvirt
//! domain ([`crate::vm::domain`]) and the Windows answer file
//! ([`crate::vm::unattend`]) are written with it.

pub(crate) enum Node {
    El(El),
    Comment(String),
}

pub(crate) struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: Option<String>,
    kids: Vec<Node>,
}

pub(crate) fn el(name: &str) -> El {
    El {
        name: name.into(),
        attrs: Vec::new(),
        text: None,
        kids: Vec::new(),
    }
}

pub(crate) fn comment(text: &str) -> Node {
    Node::Comment(text.to_string())
}

/// Whether XML 1.0 allows `c` in a document.
pub(crate) fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn clean(v: &str) -> String {
    v.chars()
        .map(|c| if xml_char(c) { c } else { '\u{FFFD}' })
        .collect()
}

fn escape(v: &str) -> String {
    quick_xml::escape::escape(clean(v).as_str()).into_owned()
}

impl From<El> for Node {
    fn from(e: El) -> Self {
        Node::El(e)
    }
}

impl El {
    pub(crate) fn a(mut self, k: &str, v: impl ToString) -> Self {
        self.attrs.push((k.into(), v.to_string()));
        self
    }
    pub(crate) fn t(mut self, v: impl ToString) -> Self {
        self.text = Some(v.to_string());
        self
    }
    pub(crate) fn k(mut self, kid: impl Into<Node>) -> Self {
        self.kids.push(kid.into());
        self
    }
    /// `kid` as the first child.
    pub(crate) fn first(mut self, kid: impl Into<Node>) -> Self {
        self.kids.insert(0, kid.into());
        self
    }
    /// Attributes in double quotes.
    pub(crate) fn render(&self, depth: usize, out: &mut String) {
        self.render_quoted(depth, '"', out);
    }
    /// Attributes in `quote` (`'` or `"`).
    pub(crate) fn render_quoted(&self, depth: usize, quote: char, out: &mut String) {
        let pad = "  ".repeat(depth);
        out.push_str(&pad);
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {k}={quote}{}{quote}", escape(v)));
        }
        match (&self.text, self.kids.is_empty()) {
            (None, true) => out.push_str("/>\n"),
            (Some(t), true) => {
                out.push('>');
                out.push_str(&escape(t));
                out.push_str(&format!("</{}>\n", self.name));
            }
            _ => {
                out.push_str(">\n");
                if let Some(t) = &self.text {
                    out.push_str(&pad);
                    out.push_str("  ");
                    out.push_str(&escape(t));
                    out.push('\n');
                }
                for c in &self.kids {
                    match c {
                        Node::El(e) => e.render_quoted(depth + 1, quote, out),
                        Node::Comment(t) => {
                            // `--` may not appear in a comment (the space
                            // before `-->` keeps a final `-` apart).
                            let t = clean(t).replace("--", "- -");
                            out.push_str(&format!("{pad}  <!-- {t} -->\n"));
                        }
                    }
                }
                out.push_str(&pad);
                out.push_str(&format!("</{}>\n", self.name));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes_values_and_comments() {
        let mut out = String::new();
        el("a")
            .a("x", "<&\"'>")
            .k(el("b").t("<&\"\u{0}"))
            .k(comment("a -- b -"))
            .render(0, &mut out);
        assert_eq!(
            out,
            "<a x=\"&lt;&amp;&quot;&apos;&gt;\">\n  <b>&lt;&amp;&quot;\u{FFFD}</b>\n  <!-- a - - b - -->\n</a>\n"
        );
        let mut r = quick_xml::Reader::from_str(&out);
        while r.read_event().unwrap() != quick_xml::events::Event::Eof {}
    }
}
