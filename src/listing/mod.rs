//! Pasted text: IOMMU-group listings and `lspci` output, turned into an
//! [`Inventory`] for `exliar analyze`. Pure: text in, inventory out.
//!
//! Each file is read line by line ([`formats::classify`]); device lines
//! become records ([`line`]), detail lines (`Subsystem:`, `Kernel driver in
//! use:`) fill in the record above them, group headers give the group of the
//! device lines below them. Records of every file are then merged by address,
//! field by field: the first value read wins, a different later value is a
//! warning. Whatever no file says stays unknown.

mod formats;
mod line;
mod vendors;

use crate::model::{ClassCode, Device, HostFacts, Inventory, IommuState, Source, Warning};

use formats::{Detail, LineKind};
use line::{LineFields, Parsed};

/// One pasted file.
#[derive(Debug, Clone)]
pub struct ListingFile {
    /// The name shown in warnings (a path, or `-` for standard input).
    pub name: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    #[error("no PCI device lines found in {files}")]
    NothingUsable { files: String },
}

/// One device line of one file, with what its detail lines added.
#[derive(Debug, Clone)]
struct Record {
    /// Which file (index into the files) and which line (1-based): the
    /// warning's `file:line` is spelled out only when there is a warning.
    file: u32,
    line: u32,
    device: Device,
}

/// What one file says.
#[derive(Debug, Default)]
struct FileFacts {
    records: Vec<Record>,
    cmdline: Option<String>,
    warnings: Vec<Warning>,
}

/// The group whose header was seen last, while its members follow.
#[derive(Debug, Clone, Copy)]
struct GroupContext {
    id: u32,
    /// Indentation of the group's first member: an unindented device line
    /// after indented members is not a member (an lspci listing that follows
    /// the group listing).
    member_indent: Option<usize>,
}

fn device_from(f: &LineFields) -> Device {
    let mut d = Device::new(f.address);
    d.class = f.class;
    d.vendor_id = f.vendor_id;
    d.device_id = f.device_id;
    d.revision = f.revision;
    d.vendor_name = f.vendor_name.clone();
    d.device_name = f.device_name.clone();
    d
}

/// The warning for a group number over 32 bits (at most 24 of its digits
/// quoted).
fn group_too_large(digits: &str) -> String {
    let shown = if digits.len() > 24 {
        format!("{}…", &digits[..24])
    } else {
        digits.to_string()
    };
    format!(
        "IOMMU group number {shown} does not fit (the largest is {})",
        u32::MAX
    )
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Read one file (`index` among the files).
fn parse_file(index: u32, name: &str, text: &str) -> FileFacts {
    let mut facts = FileFacts::default();
    let mut current: Option<usize> = None;
    let mut group: Option<GroupContext> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let location = || format!("{name}:{}", i + 1);
        let indent = indent_of(raw);
        match formats::classify(raw) {
            LineKind::Blank => current = None,
            LineKind::GroupHeader(id) => {
                group = Some(GroupContext {
                    id,
                    member_indent: None,
                });
                current = None;
            }
            LineKind::GroupTooLarge(digits) => {
                facts.warnings.push(Warning::new(
                    location(),
                    format!(
                        "{}; the devices below it are kept without a group",
                        group_too_large(digits)
                    ),
                ));
                group = None;
                current = None;
            }
            LineKind::Comment => current = None,
            LineKind::Usb => {}
            LineKind::Cmdline(c) => {
                if facts.cmdline.is_none() {
                    facts.cmdline = Some(c.to_string());
                }
                current = None;
                group = None;
            }
            LineKind::Other => {
                current = None;
                group = None;
            }
            LineKind::Detail(Detail::GroupTooLarge(digits)) => {
                facts.warnings.push(Warning::new(
                    location(),
                    format!("{}; ignored", group_too_large(digits)),
                ));
            }
            LineKind::Detail(d) => {
                if let Some(rec) = current.and_then(|i| facts.records.get_mut(i)) {
                    apply_detail(&mut rec.device, &d);
                }
            }
            LineKind::Device(dl) => {
                let explicit = dl.group;
                if dl.group_too_large.is_some() {
                    // It names a group, just not one that fits: not a
                    // member of the group above.
                    group = None;
                }
                let member_of = match (explicit, group.as_mut()) {
                    (Some(_), _) => explicit,
                    (None, Some(ctx)) => {
                        let member = match ctx.member_indent {
                            None => true,
                            Some(first) => indent > 0 || first == 0,
                        };
                        if member {
                            ctx.member_indent.get_or_insert(indent);
                            Some(ctx.id)
                        } else {
                            None
                        }
                    }
                    (None, None) => None,
                };
                if dl.columns {
                    if let Some(id) = explicit {
                        group = Some(GroupContext {
                            id,
                            member_indent: None,
                        });
                    }
                } else if explicit.is_none() && member_of.is_none() {
                    group = None;
                }
                match dl.parsed {
                    Parsed::Device(f) => {
                        if let Some(digits) = &dl.group_too_large {
                            facts.warnings.push(Warning::new(
                                location(),
                                format!(
                                    "{}; {} is kept without a group",
                                    group_too_large(digits),
                                    f.address
                                ),
                            ));
                        }
                        if let Some(why) = &f.damage {
                            facts.warnings.push(Warning::new(
                                location(),
                                format!(
                                    "device line looks truncated or garbled ({why}); kept what it says about {}",
                                    f.address
                                ),
                            ));
                        }
                        let mut device = device_from(&f);
                        device.iommu_group = member_of;
                        facts.records.push(Record {
                            file: index,
                            line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                            device,
                        });
                        current = Some(facts.records.len() - 1);
                    }
                    Parsed::Garbled(why) => {
                        facts.warnings.push(Warning::new(
                            location(),
                            format!("device line skipped: {why}"),
                        ));
                        current = None;
                    }
                    Parsed::NotDevice => current = None,
                }
            }
        }
    }
    facts
}

fn apply_detail(d: &mut Device, detail: &Detail<'_>) {
    match detail {
        Detail::Subsystem(Some((v, s))) => {
            d.subsystem_vendor_id = d.subsystem_vendor_id.or(Some(*v));
            d.subsystem_device_id = d.subsystem_device_id.or(Some(*s));
        }
        Detail::Driver(name) => {
            if d.driver.is_none() {
                d.driver = Some((*name).to_string());
            }
        }
        Detail::Group(g) => {
            d.iommu_group = d.iommu_group.or(Some(*g));
        }
        Detail::NumaNode(n) => d.numa_node = d.numa_node.or(Some(*n)),
        Detail::Subsystem(None) | Detail::GroupTooLarge(_) | Detail::Other => {}
    }
}

/// Take `new` where `old` is unknown; a different known value is a conflict.
fn merge_field<T: PartialEq + Clone + std::fmt::Debug>(
    old: &mut Option<T>,
    new: &Option<T>,
    what: &str,
    show: impl Fn(&T) -> String,
    conflicts: &mut Vec<String>,
) {
    match (old.as_ref(), new) {
        (None, Some(n)) => *old = Some(n.clone()),
        (Some(o), Some(n)) if o != n => {
            conflicts.push(format!("{what} {} (kept {})", show(n), show(o)));
        }
        _ => {}
    }
}

fn merge_class(old: &mut Option<ClassCode>, new: Option<ClassCode>, conflicts: &mut Vec<String>) {
    match (*old, new) {
        (None, Some(n)) => *old = Some(n),
        // lspci -v adds the programming interface; keep the one that says it.
        (Some(o), Some(n)) if o.class_subclass() == n.class_subclass() && o.prog_if() == 0 => {
            *old = Some(n);
        }
        (Some(o), Some(n)) if o.class_subclass() == n.class_subclass() => {}
        (Some(o), Some(n)) => conflicts.push(format!(
            "class {:04x} (kept {:04x})",
            n.class_subclass(),
            o.class_subclass()
        )),
        _ => {}
    }
}

/// Merge what another line says about a device into what is known.
fn merge_device(old: &mut Device, new: &Device) -> Vec<String> {
    let mut c = Vec::new();
    let hex = |v: &u16| format!("{v:04x}");
    let text = |v: &String| format!("`{v}`");
    merge_class(&mut old.class, new.class, &mut c);
    merge_field(&mut old.vendor_id, &new.vendor_id, "vendor id", hex, &mut c);
    merge_field(&mut old.device_id, &new.device_id, "device id", hex, &mut c);
    merge_field(
        &mut old.subsystem_vendor_id,
        &new.subsystem_vendor_id,
        "subsystem vendor id",
        hex,
        &mut c,
    );
    merge_field(
        &mut old.subsystem_device_id,
        &new.subsystem_device_id,
        "subsystem device id",
        hex,
        &mut c,
    );
    merge_field(
        &mut old.revision,
        &new.revision,
        "revision",
        |v| format!("{v:02x}"),
        &mut c,
    );
    merge_field(
        &mut old.vendor_name,
        &new.vendor_name,
        "vendor name",
        text,
        &mut c,
    );
    merge_field(
        &mut old.device_name,
        &new.device_name,
        "device name",
        text,
        &mut c,
    );
    merge_field(&mut old.driver, &new.driver, "driver", text, &mut c);
    merge_field(
        &mut old.iommu_group,
        &new.iommu_group,
        "IOMMU group",
        u32::to_string,
        &mut c,
    );
    merge_field(
        &mut old.numa_node,
        &new.numa_node,
        "NUMA node",
        i32::to_string,
        &mut c,
    );
    c
}

/// Merge the records of all files, in order, by address: the first record
/// of an address takes what the later ones add. Done in place (one stable
/// sort, then each run of one address folded into its first record), so
/// that a listing of many devices is held once, not again in a map.
fn merge(facts: Vec<FileFacts>, names: Vec<String>) -> Inventory {
    let mut cmdline = None;
    let mut per_file: Vec<Vec<Warning>> = Vec::with_capacity(facts.len());
    let mut records: Vec<Record> = Vec::new();
    for f in facts {
        per_file.push(f.warnings);
        if cmdline.is_none() {
            cmdline = f.cmdline;
        }
        if records.is_empty() {
            records = f.records;
        } else {
            records.extend(f.records);
        }
    }
    // Stable: records of one address stay in file and line order.
    records.sort_by_key(|r| r.device.address);
    // (file, line, warning) of each contradiction, told after the file's
    // own warnings, in line order, as reading the files in turn would.
    let mut conflicts: Vec<(u32, u32, Warning)> = Vec::new();
    records.dedup_by(|later, first| {
        if later.device.address != first.device.address {
            return false;
        }
        for conflict in merge_device(&mut first.device, &later.device) {
            conflicts.push((
                later.file,
                later.line,
                Warning::new(
                    format!(
                        "{}:{}",
                        names.get(later.file as usize).map_or("", String::as_str),
                        later.line
                    ),
                    format!(
                        "{}: this line says {conflict}, which an earlier line contradicts",
                        later.device.address
                    ),
                ),
            ));
        }
        true
    });
    conflicts.sort_by_key(|(file, line, _)| (*file, *line));
    let mut conflicts = conflicts.into_iter().peekable();
    let mut warnings = Vec::new();
    for (i, w) in per_file.into_iter().enumerate() {
        warnings.extend(w);
        while let Some((_, _, w)) = conflicts.next_if(|(file, _, _)| *file as usize == i) {
            warnings.push(w);
        }
    }
    // In place: a device is no larger than its record.
    let devices: Vec<Device> = records.into_iter().map(|r| r.device).collect();
    let mut inv = Inventory {
        source: Source::Listing { files: names },
        devices,
        iommu: IommuState::default(),
        host: HostFacts {
            kernel_cmdline: cmdline,
            ..HostFacts::default()
        },
        warnings,
    };
    inv.normalize();
    inv
}

/// Parse every file and merge them into one inventory.
pub fn parse_files(files: &[ListingFile]) -> Result<Inventory, ListingError> {
    let mut facts = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let mut ff = parse_file(u32::try_from(i).unwrap_or(u32::MAX), &f.name, &f.text);
        if ff.records.is_empty() {
            ff.warnings.push(Warning::new(
                &f.name,
                "no PCI device lines found in this file",
            ));
        }
        facts.push(ff);
    }
    if facts.iter().all(|f| f.records.is_empty()) {
        return Err(ListingError::NothingUsable {
            files: files
                .iter()
                .map(|f| f.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let names = files.iter().map(|f| f.name.clone()).collect();
    Ok(merge(facts, names))
}

#[cfg(test)]
mod tests;
