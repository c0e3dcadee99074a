//! One drawing function per page, and the text the scrollable panes hold
//! (also used by the app to bound scrolling).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::app::{App, FORM_FIELDS, Level};
use super::safe;
use super::view::Theme;
use crate::check::Status;
use crate::plan::isolate::PlanError;

/// Lines with the `sel`-th highlighted, scrolled so that it shows.
fn list(
    lines: Vec<Line<'static>>,
    sel: Option<usize>,
    height: u16,
    t: Theme,
) -> Paragraph<'static> {
    let h = usize::from(height.saturating_sub(2)).max(1);
    let off = sel.map_or(0, |s| (s + 1).saturating_sub(h));
    let lines: Vec<Line> = lines
        .into_iter()
        .enumerate()
        .skip(off)
        .map(|(i, l)| {
            // A marker as well as the reverse video: readable without
            // colour, and in a screen capture.
            let mut spans = vec![Span::raw(if Some(i) == sel { "> " } else { "  " })];
            spans.extend(l.spans);
            let l = Line::from(spans);
            if Some(i) == sel {
                l.style(t.selected())
            } else {
                l
            }
        })
        .collect();
    Paragraph::new(lines)
}

fn scrolled(lines: Vec<Line<'static>>, scroll: usize) -> Paragraph<'static> {
    Paragraph::new(lines.into_iter().skip(scroll).collect::<Vec<_>>())
}

fn boxed(title: impl Into<String>, focus: bool, t: Theme) -> Block<'static> {
    let b = Block::bordered().title(format!(" {} ", title.into()));
    if focus { b.border_style(t.bold()) } else { b }
}

fn status_mark(s: Status) -> &'static str {
    match s {
        Status::Ok => "[ ok ]",
        Status::Info => "[info]",
        Status::Warn => "[warn]",
        Status::Fail => "[FAIL]",
        Status::Skip => "[skip]",
    }
}

fn status_style(s: Status, t: Theme) -> Style {
    match s {
        Status::Ok => t.fg(Color::Green),
        Status::Info => t.fg(Color::Cyan),
        Status::Warn => t.fg(Color::Yellow),
        Status::Fail => t
            .fg(Color::Red)
            .add_modifier(ratatui::style::Modifier::BOLD),
        Status::Skip => t.dim(),
    }
}

fn wide(area: Rect) -> bool {
    area.width >= 120
}

// ---------------------------------------------------------------- Host

/// The IOMMU tree, filtered: group headers and their devices.
pub fn host_tree_lines(app: &App) -> Vec<String> {
    let (Some(inv), Some(a)) = (&app.host.inv, &app.host.analysis) else {
        return Vec::new();
    };
    let filter = app.host_page.filter.to_lowercase();
    let mut out = Vec::new();
    let device_line = |d: &crate::model::Device| {
        let ids = match (d.vendor_id, d.device_id) {
            (Some(v), Some(p)) => format!("[{v:04x}:{p:04x}]"),
            _ => "[????:????]".into(),
        };
        safe(&format!(
            "{} {ids} {:<10} {}",
            d.address,
            d.driver.as_deref().unwrap_or("-"),
            d.device_name.as_deref().unwrap_or("?"),
        ))
    };
    for g in &a.groups {
        let head = format!("group {} ({})", g.id, g.summary);
        let devs: Vec<String> = g
            .devices
            .iter()
            .filter_map(|addr| inv.devices.iter().find(|d| d.address == *addr))
            .map(device_line)
            .collect();
        let head_hit = filter.is_empty() || head.to_lowercase().contains(&filter);
        let shown: Vec<&String> = devs
            .iter()
            .filter(|l| head_hit || l.to_lowercase().contains(&filter))
            .collect();
        if shown.is_empty() {
            continue;
        }
        out.push(safe(&head));
        let n = shown.len();
        for (i, l) in shown.into_iter().enumerate() {
            let branch = if i + 1 == n { "└─" } else { "├─" };
            out.push(format!("  {branch} {l}"));
        }
    }
    // Devices outside any group (no IOMMU): a flat list.
    let grouped = |addr| a.groups.iter().any(|g| g.devices.contains(addr));
    let loose: Vec<String> = inv
        .devices
        .iter()
        .filter(|d| !grouped(&d.address))
        .map(device_line)
        .filter(|l| filter.is_empty() || l.to_lowercase().contains(&filter))
        .collect();
    if !loose.is_empty() {
        out.push("no IOMMU group".into());
        out.extend(loose.into_iter().map(|l| format!("  · {l}")));
    }
    out
}

fn gpu_detail(app: &App, t: Theme) -> Vec<Line<'static>> {
    let Some(g) = app.gpus().get(app.host_page.sel) else {
        return vec![Line::raw("No GPU on this host.")];
    };
    let mut l = Vec::new();
    let mut what = vec![g.kind.label().to_string()];
    if g.integrated {
        what.push("integrated".into());
    }
    if g.boot_display {
        what.push("boot display".into());
    }
    if g.virtual_function_of().is_some() {
        what.push("virtual function".into());
    }
    l.push(Line::from(Span::styled(
        safe(&format!("{} {} ({})", g.vendor, g.name, what.join(", "))),
        t.bold(),
    )));
    let stack = app
        .host
        .stacks
        .as_ref()
        .and_then(|s| s.gpu(&g.address))
        .map(|s| s.best.stack.clone())
        .unwrap_or_else(|| "-".into());
    l.push(Line::raw(safe(&format!(
        "driver {}  group {}  {}  stack {stack}",
        g.driver.as_deref().unwrap_or("none"),
        g.iommu_group.map_or("-".to_string(), |n| n.to_string()),
        g.isolation.label()
    ))));
    let funcs: Vec<String> = g.functions.iter().map(|f| f.to_string()).collect();
    l.push(Line::raw(format!("functions {}", funcs.join(" "))));
    if !g.quirks().is_empty() {
        l.push(Line::from(Span::styled(
            safe(&format!("quirks: {}", g.quirks().join(", "))),
            t.fg(Color::Yellow),
        )));
    }
    l.push(Line::raw(safe(&g.verdict().to_string())));
    l
}

/// The GPU list's title: how many, and the recommendation in short.
fn gpu_title(app: &App) -> String {
    let n = app.gpus().len();
    let r = app.host.analysis.as_ref().map(|a| &a.recommendation);
    match r.map(|r| (r.passthrough, r.host)) {
        Some((Some(p), Some(h))) => format!("GPUs ({n})  ★ pass {p}, host keeps {h}"),
        Some((Some(p), None)) => format!("GPUs ({n})  ★ {p}, handed over while the VM runs"),
        _ => format!("GPUs ({n})  no recommendation"),
    }
}

fn recommendation(app: &App, t: Theme) -> Vec<Line<'static>> {
    let Some(a) = &app.host.analysis else {
        return Vec::new();
    };
    let r = &a.recommendation;
    let head = match (r.passthrough, r.host) {
        (Some(p), Some(h)) => format!("Recommended: pass {p} through; the host keeps {h}"),
        (Some(p), None) => format!("Recommended: {p}, handed over while the VM runs (single GPU)"),
        _ => "No GPU can be recommended".to_string(),
    };
    let mut l = vec![Line::from(Span::styled(
        head,
        t.fg(Color::Green)
            .add_modifier(ratatui::style::Modifier::BOLD),
    ))];
    l.extend(r.reasons.iter().map(|s| Line::raw(safe(&format!("· {s}")))));
    l
}

pub fn host(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    if let Some(e) = &app.host.error {
        f.render_widget(
            Paragraph::new(format!("The PCI devices could not be read: {e}"))
                .wrap(Wrap { trim: false })
                .block(boxed("Host", false, t)),
            area,
        );
        return;
    }
    let gpus = app.gpus();
    let rec = app.recommended();
    let gpu_lines: Vec<Line> = gpus
        .iter()
        .map(|g| {
            let mark = if Some(g.address) == rec { "★" } else { " " };
            Line::raw(safe(&format!(
                "{mark} {} {:<3} {:<8} {:<8} {}",
                g.address,
                g.kind.label(),
                g.driver.as_deref().unwrap_or("-"),
                g.isolation.label(),
                g.name,
            )))
        })
        .collect();
    let (left, right) = if wide(area) {
        let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(area);
        (l, r)
    } else {
        let n = u16::try_from(gpus.len()).unwrap_or(4).clamp(1, 4) + 2;
        let detail = 7u16.min(area.height / 3 + 2);
        let [l, r] =
            Layout::vertical([Constraint::Length(n + detail), Constraint::Min(3)]).areas(area);
        (l, r)
    };
    let n = u16::try_from(gpus.len())
        .unwrap_or(4)
        .clamp(1, if wide(area) { 8 } else { 4 })
        + 2;
    let [glist, gdet] = Layout::vertical([Constraint::Length(n), Constraint::Min(0)]).areas(left);
    f.render_widget(
        list(
            gpu_lines,
            (!app.host_page.tree_focus).then_some(app.host_page.sel),
            glist.height,
            t,
        )
        .block(boxed(gpu_title(app), !app.host_page.tree_focus, t)),
        glist,
    );
    let mut det = gpu_detail(app, t);
    det.push(Line::raw(""));
    det.extend(recommendation(app, t));
    f.render_widget(
        Paragraph::new(det).wrap(Wrap { trim: false }).block(boxed(
            "Card and recommendation",
            false,
            t,
        )),
        gdet,
    );
    let tree = host_tree_lines(app);
    let title = if app.host_page.editing {
        format!("IOMMU groups — filter: {}_", app.host_page.filter)
    } else if app.host_page.filter.is_empty() {
        "IOMMU groups (/ filter)".to_string()
    } else {
        format!(
            "IOMMU groups — filter: {} (Esc in / clears)",
            app.host_page.filter
        )
    };
    let lines: Vec<Line> = tree
        .into_iter()
        .map(|l| {
            if l.starts_with("group") || l.starts_with("no IOMMU") {
                Line::from(Span::styled(l, t.bold()))
            } else {
                Line::raw(l)
            }
        })
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::raw("No device matches the filter.")]
    } else {
        lines
    };
    f.render_widget(
        scrolled(lines, app.host_page.tree_scroll).block(boxed(
            title,
            app.host_page.tree_focus || app.host_page.editing,
            t,
        )),
        right,
    );
}

// ---------------------------------------------------------------- Check

pub fn check(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let Some(c) = &app.check.data else {
        f.render_widget(
            Paragraph::new("Running the checks…").block(boxed("Check", false, t)),
            area,
        );
        return;
    };
    let r = &c.report;
    let mut lines = Vec::new();
    let mut sel_line = None;
    let mut group = None;
    for (i, ch) in r.checks.iter().enumerate() {
        if group != Some(ch.group) {
            group = Some(ch.group);
            lines.push(Line::from(Span::styled(
                ch.group.label().to_string(),
                t.bold(),
            )));
        }
        if i == app.check.sel {
            sel_line = Some(lines.len());
        }
        lines.push(Line::from(vec![
            Span::styled(
                format!(" {} ", status_mark(ch.status)),
                status_style(ch.status, t),
            ),
            Span::raw(safe(&format!("{:<22} {}", ch.id, ch.summary))),
        ]));
    }
    let verdict = if r.ready {
        "ready for passthrough".to_string()
    } else {
        format!("not ready: {} failing", r.counts.fail)
    };
    let (la, ra) = if wide(area) {
        let [l, r] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(area);
        (l, r)
    } else {
        let [l, r] =
            Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
        (l, r)
    };
    f.render_widget(
        list(lines, sel_line, la.height, t).block(boxed(
            format!("Checks — {verdict} (r: run again)"),
            true,
            t,
        )),
        la,
    );
    let mut d = Vec::new();
    if let Some(ch) = r.checks.get(app.check.sel) {
        d.push(Line::from(vec![
            Span::styled(
                format!("{} ", status_mark(ch.status)),
                status_style(ch.status, t),
            ),
            Span::styled(ch.id.to_string(), t.bold()),
        ]));
        d.push(Line::raw(safe(&ch.summary)));
        if !ch.evidence.is_empty() {
            d.push(Line::from(Span::styled("Evidence", t.bold())));
            for e in &ch.evidence {
                d.push(Line::raw(safe(&format!("  {}: {}", e.source, e.value))));
            }
        }
        if let Some(rem) = &ch.remedy {
            d.push(Line::from(Span::styled("Remedy", t.bold())));
            d.push(Line::from(Span::styled(
                safe(&format!("  {rem}")),
                t.fg(Color::Yellow),
            )));
        }
    }
    f.render_widget(
        Paragraph::new(d)
            .wrap(Wrap { trim: false })
            .block(boxed("Selected check", false, t)),
        ra,
    );
}

// ---------------------------------------------------------------- Isolate

/// The Isolate page's main pane: the plan (or refusal), or, once applied,
/// the commands' output and the result.
pub fn isolate_lines(app: &App) -> Vec<String> {
    let i = &app.isolate;
    let mut out: Vec<String> = Vec::new();
    if !i.output.is_empty()
        || app
            .job
            .as_ref()
            .is_some_and(|j| j.title == "applying the plan")
    {
        out.push("Applying: the regeneration commands' output".into());
        out.extend(i.output.iter().cloned());
        return out;
    }
    if let Some(why) = app.needs_root() {
        out.push(format!("({why}; the plan is shown all the same)"));
    }
    if let Some(e) = &i.plan_error {
        out.push(format!("No plan: {e}"));
        return out;
    }
    match &i.plan {
        None => {}
        Some(Err(e)) => {
            let text = e.to_string();
            out.push(safe(&format!(
                "REFUSED: {}",
                text.strip_prefix("refused: ").unwrap_or(&text)
            )));
            match e {
                PlanError::Refused {
                    overridable: true, ..
                } => out.push("f (force) goes on despite this refusal.".into()),
                PlanError::AmbiguousBootloader { .. } => {
                    out.push("b chooses the boot loader to edit.".into())
                }
                _ => {}
            }
        }
        Some(Ok(p)) if p.is_empty() => {
            out.push("Nothing to change: the target is already configured.".into());
            out.extend(
                safe(&crate::plan::render_unplaced(&p.unplaced_params))
                    .lines()
                    .map(str::to_string),
            );
        }
        Some(Ok(p)) => {
            out.extend(safe(&crate::plan::render(p)).lines().map(str::to_string));
            out.push(String::new());
            out.push("A applies this plan as one transaction (History → R undoes it).".into());
        }
    }
    out
}

pub fn isolate(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let gpus = app.gpus();
    let rec = app.recommended();
    let n = u16::try_from(gpus.len()).unwrap_or(3).clamp(1, 3) + 2;
    let [choose, opts, plan] = Layout::vertical([
        Constraint::Length(n),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    let lines: Vec<Line> = gpus
        .iter()
        .map(|g| {
            Line::raw(safe(&format!(
                "{} {} {:<8} {:<8} {}",
                if Some(g.address) == rec { "★" } else { " " },
                g.address,
                g.driver.as_deref().unwrap_or("-"),
                g.isolation.label(),
                g.name,
            )))
        })
        .collect();
    f.render_widget(
        list(lines, Some(app.isolate.gpu), choose.height, t).block(boxed(
            "GPU to isolate at boot (↑/↓)",
            true,
            t,
        )),
        choose,
    );
    let i = &app.isolate;
    let b = |on: bool| if on { "[x]" } else { "[ ]" };
    let bl = i.bootloader.map_or("detected", |b| b.name());
    f.render_widget(
        Paragraph::new(Line::raw(format!(
            " {} by address (a) {} iommu=pt (p) {} force (f) {} run commands (n)  loader: {bl} (b)",
            b(i.by_address),
            b(i.iommu_pt),
            b(i.force),
            b(app.opts.run_commands)
        ))),
        opts,
    );
    let mut lines: Vec<Line> = isolate_lines(app)
        .into_iter()
        .skip(i.scroll)
        .map(|l| {
            let s = if l.starts_with("REFUSED") || l.starts_with("No plan") {
                t.fg(Color::Red)
                    .add_modifier(ratatui::style::Modifier::BOLD)
            } else if l.starts_with("warning") || l.starts_with("(read-only") {
                t.fg(Color::Yellow)
            } else {
                t.diff_line(&l)
            };
            Line::from(Span::styled(l, s))
        })
        .collect();
    if let Some((lvl, m)) = &i.result {
        lines.insert(0, Line::from(Span::styled(m.clone(), t.level(lvl))));
    }
    let title = match &i.plan {
        _ if !i.output.is_empty() => "Apply".to_string(),
        Some(Ok(p)) if !p.is_empty() => format!("Plan: {} steps (PgUp/PgDn scroll)", p.steps.len()),
        _ => "Plan".to_string(),
    };
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed(title, false, t)),
        plan,
    );
}

// ---------------------------------------------------------------- Runtime

pub fn runtime(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let gpus = app.gpus();
    let n = u16::try_from(gpus.len()).unwrap_or(3).clamp(1, 4) + 2;
    let [choose, rest] = Layout::vertical([Constraint::Length(n), Constraint::Min(0)]).areas(area);
    let lines: Vec<Line> = gpus
        .iter()
        .map(|g| {
            let held = if app.runtime.held.contains(&g.address) {
                "  held by exliar"
            } else {
                ""
            };
            Line::raw(safe(&format!(
                "{} {:<10} {}{held}",
                g.address,
                g.driver.as_deref().unwrap_or("no driver"),
                g.name,
            )))
        })
        .collect();
    f.render_widget(
        list(lines, Some(app.runtime.sel), choose.height, t).block(boxed(
            format!(
                "Card (↑/↓)   b bind to vfio-pci now   u give it back   [{}] force (f)",
                if app.isolate.force { "x" } else { " " }
            ),
            true,
            t,
        )),
        choose,
    );
    let mut d: Vec<Line> = Vec::new();
    if !app.can_bind() {
        d.push(Line::from(Span::styled(
            "read-only: bind and unbind write to the kernel (sysfs) and need root (sudo exliar tui)".to_string(),
            t.fg(Color::Yellow),
        )));
    }
    if let (Some(g), Some(inv)) = (gpus.get(app.runtime.sel), &app.host.inv) {
        d.push(Line::from(Span::styled(
            "The card's functions now",
            t.bold(),
        )));
        for a in &g.functions {
            let drv = inv
                .devices
                .iter()
                .find(|x| x.address == *a)
                .and_then(|x| x.driver.clone());
            d.push(Line::raw(safe(&format!(
                "  {a}  {}",
                drv.as_deref().unwrap_or("no driver")
            ))));
        }
    }
    if let Some(e) = &app.runtime.error {
        d.push(Line::from(Span::styled(safe(e), t.fg(Color::Red))));
    }
    if let Some(o) = &app.runtime.outcome {
        d.push(Line::raw(""));
        d.push(Line::from(Span::styled(
            format!(
                "{}: {}",
                o.action,
                if o.ok { "done, verified" } else { "not done" }
            ),
            if o.ok {
                t.fg(Color::Green)
            } else {
                t.fg(Color::Red)
            },
        )));
        for dev in &o.devices {
            d.push(Line::raw(safe(&format!(
                "  {}  {} → {}",
                dev.address,
                dev.driver_before.as_deref().unwrap_or("none"),
                dev.driver_after.as_deref().unwrap_or("none")
            ))));
        }
        for g in &o.groups {
            d.push(Line::raw(format!(
                "  group {}: {}{}",
                g.id,
                if g.viable { "viable" } else { "NOT viable" },
                if g.vfio_node {
                    ", /dev/vfio node present"
                } else {
                    ""
                }
            )));
        }
        for r in &o.refusals {
            d.push(Line::from(Span::styled(
                safe(&format!(
                    "  refused {}: {}{}",
                    r.address,
                    r.reason,
                    if r.overridable { " (f: force)" } else { "" }
                )),
                t.fg(Color::Yellow),
            )));
        }
        for fl in &o.failures {
            d.push(Line::from(Span::styled(
                safe(&format!("  failed: {fl}")),
                t.fg(Color::Red),
            )));
        }
        for w in &o.warnings {
            d.push(Line::from(Span::styled(
                safe(&format!("  warning: {w}")),
                t.fg(Color::Yellow),
            )));
        }
        if !o.steps.is_empty() {
            d.push(Line::from(Span::styled("Kernel writes", t.bold())));
            d.extend(o.steps.iter().map(|s| Line::raw(safe(&format!("  {s}")))));
        }
    }
    f.render_widget(
        Paragraph::new(d)
            .wrap(Wrap { trim: false })
            .block(boxed("Runtime binding", false, t)),
        rest,
    );
}

// ---------------------------------------------------------------- History

/// The selected transaction: its journal and what it changed.
pub fn history_detail(app: &App) -> String {
    let Some(j) = app.history.data.journals.get(app.history.sel) else {
        return String::new();
    };
    let mut s = safe(&crate::cli::boot::journal_text(j));
    s.push('\n');
    s.push_str(&super::data::transaction_diffs(&app.opts.target_root(), j));
    s
}

pub fn history(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let h = &app.history;
    let js = &h.data.journals;
    let n = u16::try_from(js.len()).unwrap_or(5).clamp(1, 5) + 2;
    let [choose, rest] = Layout::vertical([Constraint::Length(n), Constraint::Min(0)]).areas(area);
    let mut lines: Vec<Line> = js
        .iter()
        .map(|j| {
            let what = match &j.subject {
                Some(s) => safe(&format!("{s:?}")).chars().take(40).collect::<String>(),
                None => format!("GPU {}", j.gpu.map(|g| g.to_string()).unwrap_or_default()),
            };
            Line::raw(format!(
                "{}  {:<12} {what}  {} files",
                j.id,
                j.status.to_string(),
                j.files.len()
            ))
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::raw(h.data.error.clone().unwrap_or_else(|| {
            format!("No transactions on {}.", app.opts.target_root().display())
        })));
    }
    let sel = (!js.is_empty()).then_some(h.sel);
    f.render_widget(
        list(lines, sel, choose.height, t).block(boxed(
            format!(
                "Transactions   R roll back   [{}] force (f)",
                if h.force { "x" } else { " " }
            ),
            !h.detail_focus,
            t,
        )),
        choose,
    );
    let mut d: Vec<Line> = Vec::new();
    if let Some((lvl, m)) = &h.result {
        d.push(Line::from(Span::styled(m.clone(), t.level(lvl))));
    }
    let body: Vec<String> = if !h.output.is_empty() {
        h.output.clone()
    } else {
        history_detail(app).lines().map(str::to_string).collect()
    };
    d.extend(body.into_iter().map(|l| {
        let s = t.diff_line(&l);
        Line::from(Span::styled(l, s))
    }));
    f.render_widget(
        scrolled(d, h.scroll).block(boxed("Transaction (d: scroll here)", h.detail_focus, t)),
        rest,
    );
}

// ---------------------------------------------------------------- VMs

pub fn vms(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let v = &app.vms;
    if let Some(form) = &v.form {
        let [fa, out] = Layout::vertical([
            Constraint::Length(FORM_FIELDS.len() as u16 + 2),
            Constraint::Min(0),
        ])
        .areas(area);
        let lines: Vec<Line> = FORM_FIELDS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let value = match form.values.get(i) {
                    Some(s) => s.clone(),
                    None => (if form.looking_glass {
                        "[x] on (Space)"
                    } else {
                        "[ ] off (Space)"
                    })
                    .to_string(),
                };
                let cursor = if i == form.field && i < 6 { "_" } else { "" };
                let line = Line::from(vec![
                    Span::styled(format!("{name:>14}: "), t.bold()),
                    Span::raw(format!("{value}{cursor}")),
                ]);
                if i == form.field {
                    line.style(t.selected())
                } else {
                    line
                }
            })
            .collect();
        f.render_widget(
            Paragraph::new(lines).block(boxed(
                "New VM   Tab next field   Enter preview   F2 define   Esc close",
                true,
                t,
            )),
            fa,
        );
        output_pane(
            f,
            app,
            t,
            out,
            "Preview: the domain and its plan (nothing is done until F2)",
        );
        return;
    }
    let [la, out] = Layout::vertical([Constraint::Percentage(45), Constraint::Min(0)]).areas(area);
    let mut lines: Vec<Line> = Vec::new();
    let mut sel = None;
    match &v.rows {
        None => lines.push(Line::raw(format!(
            "Listing the VMs on {}…",
            app.opts.connect
        ))),
        Some(Err(e)) => lines.push(Line::from(Span::styled(
            format!("The VMs cannot be listed: {e}"),
            t.fg(Color::Red),
        ))),
        Some(Ok(rows)) if rows.is_empty() => {
            lines.push(Line::raw(format!(
                "No VMs on {} (c creates one).",
                app.opts.connect
            )));
        }
        Some(Ok(rows)) => {
            lines.push(Line::from(Span::styled(
                format!("{:<24} {:<12} {:<12} GPU", "NAME", "STATE", "PROFILE"),
                t.bold(),
            )));
            for r in rows {
                let state_style = if r.state == "running" {
                    t.fg(Color::Green)
                } else {
                    Style::new()
                };
                lines.push(Line::from(vec![
                    Span::raw(format!("{:<24} ", r.name)),
                    Span::styled(format!("{:<12} ", r.state), state_style),
                    Span::raw(format!(
                        "{:<12} {}",
                        r.profile.as_deref().unwrap_or(if r.exliar {
                            "-"
                        } else {
                            "(not exliar's)"
                        }),
                        r.gpu.as_deref().unwrap_or("-")
                    )),
                ]));
            }
            sel = Some(v.sel + 1);
        }
    }
    f.render_widget(
        list(lines, sel, la.height, t).block(boxed(
            format!(
                "VMs on {}   s start  t stop  O force off  c create  r refresh",
                app.opts.connect
            ),
            true,
            t,
        )),
        la,
    );
    output_pane(f, app, t, out, "Output");
}

fn output_pane(f: &mut Frame, app: &App, t: Theme, area: Rect, title: &str) {
    let v = &app.vms;
    let mut d: Vec<Line> = Vec::new();
    if let Some((lvl, m)) = &v.result {
        d.push(Line::from(Span::styled(m.clone(), t.level(lvl))));
    }
    d.extend(v.output.iter().skip(v.scroll).map(|l| {
        let s = t.diff_line(l.trim_start());
        Line::from(Span::styled(l.clone(), s))
    }));
    if d.is_empty() && !app.opts.privileged {
        d.push(Line::from(Span::styled(
            "Starting and stopping VMs on qemu:///system needs root or the libvirt group.",
            t.dim(),
        )));
    }
    let _ = Level::Info;
    f.render_widget(Paragraph::new(d).block(boxed(title, false, t)), area);
}
