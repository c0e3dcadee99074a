//! The rules of Windows Setup's answer-file format that can be checked
//! without Windows: well-formed XML, the `unattend` root in the
//! `urn:schemas-microsoft-com:unattend` namespace, `settings` with one of
//! the seven configuration passes (each pass at most once), components
//! with a name known for their pass and the four identity attributes,
//! `wcm:` attributes in the WMIConfig namespace, and `PlainText` true or
//! false. (Setup checks the rest against its schemas, which ship only
//! with Windows.)

use std::collections::BTreeSet;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{NS_UNATTEND, NS_WCM};

/// Windows Setup's configuration passes, in the order they run.
pub const PASSES: &[&str] = &[
    "windowsPE",
    "offlineServicing",
    "generalize",
    "specialize",
    "auditSystem",
    "auditUser",
    "oobeSystem",
];

/// Components exliar knows, with the passes they have settings for (from
/// Microsoft's unattend reference: each setting page lists its "valid
/// configuration passes"). Those exliar writes, and common ones.
pub const COMPONENTS: &[(&str, &[&str])] = &[
    ("Microsoft-Windows-International-Core-WinPE", &["windowsPE"]),
    ("Microsoft-Windows-Setup", &["windowsPE"]),
    ("Microsoft-Windows-PnpCustomizationsWinPE", &["windowsPE"]),
    (
        "Microsoft-Windows-PnpCustomizationsNonWinPE",
        &["offlineServicing", "auditSystem", "specialize"],
    ),
    (
        "Microsoft-Windows-International-Core",
        &["specialize", "oobeSystem"],
    ),
    (
        "Microsoft-Windows-Shell-Setup",
        &[
            "offlineServicing",
            "specialize",
            "auditSystem",
            "auditUser",
            "oobeSystem",
        ],
    ),
    (
        "Microsoft-Windows-Deployment",
        &["specialize", "auditSystem", "auditUser", "oobeSystem"],
    ),
    ("Microsoft-Windows-PnpSysprep", &["generalize"]),
    (
        "Microsoft-Windows-Security-SPP",
        &["generalize", "specialize"],
    ),
    ("Microsoft-Windows-Security-SPP-UX", &["specialize"]),
    ("Microsoft-Windows-UnattendedJoin", &["specialize"]),
    (
        "Microsoft-Windows-LUA-Settings",
        &["offlineServicing", "specialize", "auditSystem"],
    ),
    (
        "Microsoft-Windows-TerminalServices-LocalSessionManager",
        &["offlineServicing", "specialize"],
    ),
    (
        "Microsoft-Windows-TerminalServices-RDP-WinStationExtensions",
        &["specialize"],
    ),
    ("Networking-MPSSVC-Svc", &["specialize"]),
    ("Microsoft-Windows-TCPIP", &["specialize"]),
    ("Microsoft-Windows-DNS-Client", &["specialize"]),
    ("Microsoft-Windows-SQMApi", &["specialize", "oobeSystem"]),
    ("Microsoft-Windows-IE-InternetExplorer", &["specialize"]),
];

pub const ARCHITECTURES: &[&str] = &["x86", "amd64", "arm64", "wow64"];

/// Where the walk is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    Settings,
    Component,
    Inside,
    Other,
}

/// Findings about an answer file, one sentence each; empty: it passes.
pub fn check_answer_file(xml: &str) -> Vec<String> {
    let mut f = Vec::new();
    let mut r = NsReader::from_str(xml);
    let mut stack: Vec<(String, Place)> = Vec::new();
    let mut roots = 0;
    let mut passes: BTreeSet<String> = BTreeSet::new();
    let mut pass: Option<String> = None;
    let mut components: BTreeSet<(String, String)> = BTreeSet::new();
    let mut plain: Option<String> = None;
    loop {
        let (ns, ev) = match r.read_resolved_event() {
            Ok((ns, ev)) => (ns_of(ns), ev),
            Err(e) => {
                f.push(format!(
                    "not well-formed XML at byte {}: {e}",
                    r.error_position()
                ));
                return f;
            }
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let local = e.local_name().as_ref().to_string();
                let parent = stack.last().map(|(_, p)| *p);
                check_attrs(&r, e, &local, &mut f);
                let place = match parent {
                    None => {
                        roots += 1;
                        if roots > 1 {
                            f.push(format!("a second root element <{local}>"));
                        } else if local != "unattend" {
                            f.push(format!("the root element is <{local}>, not <unattend>"));
                        } else if ns.as_deref() != Some(NS_UNATTEND) {
                            f.push(format!(
                                "<unattend> is in namespace {}, not {NS_UNATTEND}",
                                show_ns(&ns)
                            ));
                        }
                        Place::Root
                    }
                    Some(Place::Root) => {
                        if ns.as_deref() != Some(NS_UNATTEND) {
                            f.push(format!(
                                "<{local}> is in namespace {}, not {NS_UNATTEND}",
                                show_ns(&ns)
                            ));
                        }
                        match local.as_str() {
                            "settings" => {
                                pass = check_settings(e, &mut passes, &mut f);
                                components.clear();
                                Place::Settings
                            }
                            "servicing" => Place::Other,
                            _ => {
                                f.push(format!(
                                    "<{local}> under <unattend>: only <settings> and <servicing> go there"
                                ));
                                Place::Other
                            }
                        }
                    }
                    Some(Place::Settings) => {
                        if local == "component" && ns.as_deref() == Some(NS_UNATTEND) {
                            check_component(e, pass.as_deref(), &mut components, &mut f);
                            Place::Component
                        } else {
                            f.push(format!(
                                "<{local}> in <settings>: only <component> goes there"
                            ));
                            Place::Other
                        }
                    }
                    Some(Place::Component | Place::Inside) => {
                        if ns.as_deref() != Some(NS_UNATTEND) {
                            f.push(format!(
                                "<{local}> is in namespace {}, not the answer file's",
                                show_ns(&ns)
                            ));
                        }
                        Place::Inside
                    }
                    Some(Place::Other) => Place::Other,
                };
                if local == "PlainText" && place == Place::Inside {
                    if empty {
                        f.push("<PlainText> is empty: it must be true or false".into());
                    } else {
                        plain = Some(String::new());
                    }
                }
                if !empty {
                    stack.push((local, place));
                }
            }
            Event::Text(t) => {
                if let Some(p) = plain.as_mut() {
                    p.push_str(&t.xml10_content());
                } else if stack.is_empty() && !t.xml10_content().trim().is_empty() {
                    f.push("text outside the root element".into());
                }
            }
            Event::CData(t) => {
                if let Some(p) = plain.as_mut() {
                    p.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(g) => {
                let name: &str = &g;
                if let Some(p) = plain.as_mut() {
                    p.push_str(&format!("&{name};"));
                }
                if !matches!(name, "amp" | "lt" | "gt" | "quot" | "apos") && !name.starts_with('#')
                {
                    f.push(format!("an undefined entity &{name};"));
                }
            }
            Event::End(_) => {
                if let Some((local, _)) = stack.pop()
                    && local == "PlainText"
                    && let Some(p) = plain.take()
                    && !matches!(p.trim(), "true" | "false")
                {
                    f.push(format!(
                        "<PlainText> is {:?}: it must be true or false",
                        p.trim()
                    ));
                }
                if stack.len() <= 1 {
                    pass = None;
                }
            }
            Event::DocType(_) => f.push("a DOCTYPE: answer files have none".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some((open, _)) = stack.last() {
        f.push(format!("the file ends inside <{open}>"));
    }
    if roots == 0 {
        f.push("no root element".into());
    }
    f
}

fn ns_of(ns: ResolveResult<'_>) -> Option<String> {
    match ns {
        ResolveResult::Bound(n) => Some(n.0.to_string()),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(p) => Some(format!("(undeclared prefix {p})")),
    }
}

fn show_ns(ns: &Option<String>) -> String {
    match ns {
        Some(n) => n.clone(),
        None => "(none)".into(),
    }
}

/// Attributes of `component`/`settings` are plain; prefixed ones must be
/// declared, and `wcm:` ones in the WMIConfig namespace with known values.
fn check_attrs(r: &NsReader<&[u8]>, e: &BytesStart, element: &str, f: &mut Vec<String>) {
    for a in e.attributes() {
        let a = match a {
            Ok(a) => a,
            Err(err) => {
                f.push(format!("<{element}>: a broken attribute: {err}"));
                continue;
            }
        };
        let key = a.key;
        let key_s: &str = key.as_ref();
        if key_s == "xmlns" || key_s.starts_with("xmlns:") {
            continue;
        }
        let (ns, local) = r.resolver().resolve_attribute(key);
        let local: &str = local.as_ref();
        match ns {
            ResolveResult::Unbound => {}
            ResolveResult::Unknown(p) => {
                f.push(format!(
                    "<{element}>: attribute {key_s} uses the undeclared prefix {p}"
                ));
            }
            ResolveResult::Bound(n) if n.0 == NS_WCM => {
                let v = a
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map(|v| v.into_owned())
                    .unwrap_or_default();
                if local == "action" && !matches!(v.as_str(), "add" | "modify" | "remove") {
                    f.push(format!(
                        "<{element}>: wcm:action is {v:?}, not add, modify or remove"
                    ));
                }
            }
            ResolveResult::Bound(_) => {}
        }
    }
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        let k: &str = a.key.as_ref();
        (k == name).then(|| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_default()
        })
    })
}

fn check_settings(
    e: &BytesStart,
    passes: &mut BTreeSet<String>,
    f: &mut Vec<String>,
) -> Option<String> {
    let Some(pass) = attr(e, "pass") else {
        f.push("<settings> without a pass".into());
        return None;
    };
    if !PASSES.contains(&pass.as_str()) {
        f.push(format!(
            "<settings pass={pass:?}>: not a configuration pass (they are {})",
            PASSES.join(", ")
        ));
        return None;
    }
    if !passes.insert(pass.clone()) {
        f.push(format!("pass {pass} appears twice"));
    }
    Some(pass)
}

fn check_component(
    e: &BytesStart,
    pass: Option<&str>,
    seen: &mut BTreeSet<(String, String)>,
    f: &mut Vec<String>,
) {
    let Some(name) = attr(e, "name") else {
        f.push("<component> without a name".into());
        return;
    };
    match (COMPONENTS.iter().find(|(n, _)| *n == name), pass) {
        (None, _) => f.push(format!("component {name}: not a component exliar knows")),
        (Some((_, valid)), Some(p)) if !valid.contains(&p) => f.push(format!(
            "component {name} does not belong in pass {p} (its passes: {})",
            valid.join(", ")
        )),
        _ => {}
    }
    let arch = attr(e, "processorArchitecture");
    match &arch {
        None => f.push(format!("component {name}: no processorArchitecture")),
        Some(a) if !ARCHITECTURES.contains(&a.as_str()) => f.push(format!(
            "component {name}: processorArchitecture {a:?} is not one of {}",
            ARCHITECTURES.join(", ")
        )),
        _ => {}
    }
    match attr(e, "publicKeyToken") {
        None => f.push(format!("component {name}: no publicKeyToken")),
        Some(t) if t.len() != 16 || !t.chars().all(|c| c.is_ascii_hexdigit()) => f.push(format!(
            "component {name}: publicKeyToken {t:?} is not 16 hexadecimal digits"
        )),
        _ => {}
    }
    if attr(e, "language").is_none_or(|l| l.is_empty()) {
        f.push(format!("component {name}: no language"));
    }
    match attr(e, "versionScope") {
        None => f.push(format!("component {name}: no versionScope")),
        Some(v) if v != "nonSxS" && v != "SxS" => f.push(format!(
            "component {name}: versionScope {v:?} is not nonSxS or SxS"
        )),
        _ => {}
    }
    if let Some(a) = arch
        && !seen.insert((name.clone(), a.clone()))
    {
        f.push(format!(
            "component {name} ({a}) appears twice in pass {}",
            pass.unwrap_or("?")
        ));
    }
}
