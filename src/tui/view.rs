//! Drawing: reads the [`App`], never changes it (but for the tab bar's
//! cells, remembered for mouse clicks).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::app::{App, Level, Page};
use super::pages;

/// Styles, without colour under `NO_COLOR` (bold, reverse and underline
/// stay: every state also has a word or a symbol).
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub colour: bool,
}

impl Theme {
    pub fn fg(self, c: Color) -> Style {
        if self.colour {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }
    pub fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    pub fn dim(self) -> Style {
        if self.colour {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }
    pub fn level(self, l: &Level) -> Style {
        match l {
            Level::Info => self.fg(Color::Green),
            Level::Warn => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Level::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }
    /// A diff or command line, coloured by its first character.
    pub fn diff_line(self, l: &str) -> Style {
        if l.starts_with("+++") || l.starts_with("---") {
            self.bold()
        } else if l.starts_with('+') {
            self.fg(Color::Green)
        } else if l.starts_with('-') {
            self.fg(Color::Red)
        } else if l.starts_with("@@") {
            self.fg(Color::Cyan)
        } else if l.starts_with('$') {
            self.bold()
        } else {
            Style::new()
        }
    }
}

const SPINNER: [&str; 4] = ["|", "/", "-", "\\"];

/// Draw the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let t = Theme {
        colour: app.opts.colour,
    };
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_tabs(f, app, t, tabs);
    match app.page {
        Page::Host => pages::host(f, app, t, body),
        Page::Check => pages::check(f, app, t, body),
        Page::Isolate => pages::isolate(f, app, t, body),
        Page::Runtime => pages::runtime(f, app, t, body),
        Page::History => pages::history(f, app, t, body),
        Page::Vms => pages::vms(f, app, t, body),
    }
    draw_status(f, app, t, status);
    if let Some(p) = &app.prompt {
        let area = centred(f.area(), 70, 5);
        f.render_widget(Clear, area);
        let text = vec![
            Line::from(Span::styled(p.question.clone(), t.bold())),
            Line::from(vec![
                Span::raw("> "),
                Span::styled(p.input.clone(), t.fg(Color::Yellow)),
                Span::styled("_", t.bold()),
            ]),
        ];
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" Confirm ")),
            area,
        );
    }
    if app.help {
        let lines = help_lines(app);
        let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
        let area = centred(f.area(), 72, h);
        f.render_widget(Clear, area);
        f.render_widget(
            Paragraph::new(lines.into_iter().map(Line::from).collect::<Vec<_>>())
                .block(Block::bordered().title(" Keys (any key closes) ")),
            area,
        );
    }
}

fn draw_tabs(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let mut spans = vec![Span::styled(" exliar ", t.bold())];
    let mut x = 8u16;
    let mut cells = Vec::new();
    for (i, p) in Page::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, p.title());
        let w = u16::try_from(label.len()).unwrap_or(0);
        cells.push((area.x + x, area.x + x + w, *p));
        x += w + 1;
        let style = if *p == app.page {
            t.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw("|"));
    }
    spans.pop();
    let root = app.opts.root.display().to_string();
    if root != "/" {
        spans.push(Span::styled(format!("  root {root}"), t.dim()));
    }
    *app.tab_cells.borrow_mut() = cells;
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_status(f: &mut Frame, app: &App, t: Theme, area: Rect) {
    let line = if let Some(j) = &app.job {
        let s = SPINNER[(app.ticks % 4) as usize];
        Line::from(vec![
            Span::styled(format!(" {s} "), t.bold()),
            Span::raw(format!("{}…", j.title)),
        ])
    } else if let Some((l, m)) = &app.status {
        Line::from(Span::styled(format!(" {m}"), t.level(l)))
    } else {
        let mut s = String::from(" ? keys  q quit  Tab/1-6 pages");
        if !app.opts.privileged {
            s.push_str("  (not root: read-only where root is needed)");
        }
        Line::from(Span::styled(s, t.dim()))
    };
    f.render_widget(Paragraph::new(line), area);
}

/// A box of at most `w`×`h` in the middle of `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn help_lines(app: &App) -> Vec<String> {
    let mut l = vec![
        "Tab / Shift-Tab, ←/→, 1-6   change page".to_string(),
        "↑/↓ or j/k, PgUp/PgDn       move, scroll".into(),
        "?  this help     q / Esc / Ctrl-C  quit".into(),
        String::new(),
    ];
    let page: &[&str] = match app.page {
        Page::Host => &[
            "Host: / filter the devices (Enter keeps, Esc clears)",
            "      g or Enter  move between the GPUs and the IOMMU tree",
        ],
        Page::Check => &["Check: ↑/↓ pick a check (evidence, remedy)   r  run again"],
        Page::Isolate => &[
            "Isolate: ↑/↓ the GPU   PgUp/PgDn scroll the plan",
            "  a by address   p iommu=pt   f force   b boot loader",
            "  n run the regeneration commands (on/off)",
            "  A apply (type yes to confirm)",
        ],
        Page::Runtime => &["Runtime: ↑/↓ the card   b bind to vfio-pci   u unbind   f force"],
        Page::History => &[
            "History: ↑/↓ transaction   d/Enter scroll the diff",
            "  R roll back (shows what is restored; type yes)   f force",
        ],
        Page::Vms => &[
            "VMs: s start   t stop (ACPI)   O force off   r refresh",
            "  c create: Tab between fields, Space switches,",
            "    Enter preview (plan, nothing done), F2 define",
        ],
    };
    l.extend(page.iter().map(|s| s.to_string()));
    l
}
