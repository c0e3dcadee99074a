//! The kernel-parameter model: tokenizing a command line the way the kernel
//! does, parameter identity, conflicts, and the decision of what to add,
//! replace and remove. Editors feed it the parameters already present in
//! their file and apply the decision to their own syntax.

use std::borrow::Cow;

/// A token of a kernel command line: byte range in the text it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Why a command line cannot be tokenized: byte offset and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizeError {
    pub offset: usize,
    pub message: String,
}

/// The kernel's idea of white space (`isspace` in lib/ctype.c).
pub fn is_kernel_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Split a command line into parameters the way the kernel's `next_arg()`
/// (lib/cmdline.c) does: white space separates, a double quote toggles
/// quoting anywhere in a token (`foo="a b"`, `"foo=a b"`). An unterminated
/// quote, which the kernel would silently run to the end of the line, is an
/// error here.
pub fn tokenize(cmdline: &str) -> Result<Vec<Span>, TokenizeError> {
    spans(cmdline).collect()
}

/// About as many as the tokens of `cmdline`, to size a list of them once:
/// one more than its spaces, counted at the speed of memory (a line
/// separated otherwise only grows its list step by step).
pub(crate) fn about_tokens(cmdline: &str) -> usize {
    memchr::memchr_iter(b' ', cmdline.as_bytes()).count() + 1
}

/// [`tokenize`] one token at a time, for editors that make something of
/// each token at once instead of keeping a list of spans too. After an
/// error it ends.
pub(crate) fn spans(cmdline: &str) -> Spans<'_> {
    Spans {
        b: cmdline.as_bytes(),
        i: 0,
    }
}

pub(crate) struct Spans<'a> {
    b: &'a [u8],
    i: usize,
}

impl Iterator for Spans<'_> {
    type Item = Result<Span, TokenizeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.b;
        let mut i = self.i;
        while i < b.len() && is_kernel_space(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            self.i = i;
            return None;
        }
        let start = i;
        let mut quote_at: Option<usize> = None;
        while i < b.len() {
            let c = b[i];
            if c == b'"' {
                quote_at = if quote_at.is_some() { None } else { Some(i) };
            } else if quote_at.is_none() && is_kernel_space(c) {
                break;
            }
            i += 1;
        }
        if let Some(q) = quote_at {
            self.i = b.len();
            return Some(Err(TokenizeError {
                offset: q,
                message: "unterminated double quote in the kernel command line".into(),
            }));
        }
        self.i = i;
        Some(Ok(Span { start, end: i }))
    }
}

/// The tokens of a command line as strings.
pub fn split(cmdline: &str) -> Result<Vec<String>, TokenizeError> {
    Ok(tokenize(cmdline)?
        .into_iter()
        .map(|s| cmdline[s.start..s.end].to_string())
        .collect())
}

/// Whether `p` is exactly one well-formed kernel parameter.
pub fn is_single_param(p: &str) -> bool {
    match tokenize(p) {
        Ok(v) => v.len() == 1 && v[0].start == 0 && v[0].end == p.len(),
        Err(_) => false,
    }
}

/// A parameter's key and value: quotes removed, key with `-` read as `_`
/// (the kernel's `parameq()` in kernel/params.c treats them the same, so
/// `vfio-pci.ids` and `vfio_pci.ids` are one parameter).
pub fn key_value(p: &str) -> (String, Option<String>) {
    let (k, v) = key_value_ref(p);
    (k.into_owned(), v.map(Cow::into_owned))
}

/// [`key_value`], borrowing from `p` when nothing changes (no quote, no
/// `-` in the key: nearly every parameter), so that comparing a command
/// line's parameters copies none of them.
fn key_value_ref(p: &str) -> (Cow<'_, str>, Option<Cow<'_, str>>) {
    fn key(k: &str) -> Cow<'_, str> {
        if k.contains('-') {
            Cow::Owned(k.replace('-', "_"))
        } else {
            Cow::Borrowed(k)
        }
    }
    if p.contains('"') {
        let unquoted: String = p.chars().filter(|&c| c != '"').collect();
        return match unquoted.split_once('=') {
            Some((k, v)) => (
                Cow::Owned(k.replace('-', "_")),
                Some(Cow::Owned(v.to_string())),
            ),
            None => (Cow::Owned(unquoted.replace('-', "_")), None),
        };
    }
    match p.split_once('=') {
        Some((k, v)) => (key(k), Some(Cow::Borrowed(v))),
        None => (key(p), None),
    }
}

/// Whether the key of `have` as [`key_value`] reads it (quotes taken out,
/// up to the first `=`, `-` read as `_`) is `key`, without copying: most
/// parameters of a command line differ from a wanted one in their first
/// byte. Two parameters that are the same or conflict have the same key.
fn key_is(have: &str, key: &str) -> bool {
    let k = key.as_bytes();
    let mut n = 0;
    for &c in have.as_bytes() {
        let c = match c {
            b'"' => continue,
            b'=' => break,
            b'-' => b'_',
            c => c,
        };
        if k.get(n) != Some(&c) {
            return false;
        }
        n += 1;
    }
    n == k.len()
}

/// The first byte of the key of `p` as [`key_is`] reads it (`None`: the
/// key is empty): a parameter whose key starts otherwise is not the one
/// looked for, and an editor can tell that without reading it again.
pub(crate) fn key_initial(p: &str) -> Option<u8> {
    key_initial_of(p.as_bytes())
}

/// [`key_initial`] of a parameter's bytes.
#[inline]
pub(crate) fn key_initial_of(p: &[u8]) -> Option<u8> {
    for &c in p {
        match c {
            b'"' => continue,
            b'=' => return None,
            b'-' => return Some(b'_'),
            c => return Some(c),
        }
    }
    None
}

/// Keys that may legitimately appear several times, each occurrence adding
/// to the others (a list), so two different values never conflict.
const LIST_KEYS: &[&str] = &[
    "console",
    "initcall_blacklist",
    "modprobe.blacklist",
    "module_blacklist",
    "rd.driver.pre",
    "rd.driver.post",
    "rd.driver.blacklist",
    "rd.luks.uuid",
    "rd.luks.name",
    "rd.lvm.lv",
];

/// The identity two parameters share when they set the same thing.
/// `video=` is per output: `video=efifb:off` and `video=DP-1:1920x1080@60`
/// are different settings.
pub fn identity(p: &str) -> String {
    identity_of(key_value_ref(p)).into_owned()
}

/// [`identity`] of a parameter's [`key_value_ref`].
fn identity_of<'a>((k, v): (Cow<'a, str>, Option<Cow<'a, str>>)) -> Cow<'a, str> {
    // `l` read with `-` as `_` equals `k`.
    let list_key = |l: &str| {
        l.len() == k.len()
            && l.bytes()
                .zip(k.bytes())
                .all(|(a, b)| (if a == b'-' { b'_' } else { a }) == b)
    };
    if LIST_KEYS.iter().any(|l| list_key(l)) {
        return Cow::Owned(format!("{k}={}", v.unwrap_or_default()));
    }
    if k == "video"
        && let Some(v) = v
    {
        let output = v.split(':').next().unwrap_or("");
        return Cow::Owned(format!("video={output}"));
    }
    k
}

/// Same parameter, same value (`vfio_pci.ids=x` equals `vfio-pci.ids=x`).
pub fn same_param(a: &str, b: &str) -> bool {
    key_value_ref(a) == key_value_ref(b)
}

/// Whether an existing parameter `have` contradicts the wanted `want`.
/// `iommu=` takes a comma list and every occurrence counts (`iommu=pt iommu=1`
/// is fine); only `off`/`nopt` contradict `iommu=pt`.
pub fn conflicts(have: &str, want: &str) -> bool {
    Wanted::new(want).conflicts(have)
}

/// A parameter to add, read once, compared with each parameter of a
/// command line without copying either.
struct Wanted<'a> {
    kv: (Cow<'a, str>, Option<Cow<'a, str>>),
    identity: Cow<'a, str>,
    /// The first byte of its key ([`key_initial`]).
    initial: Option<u8>,
}

impl<'a> Wanted<'a> {
    fn new(text: &'a str) -> Self {
        let kv = key_value_ref(text);
        let identity = identity_of(kv.clone());
        let initial = kv.0.as_bytes().first().copied();
        Self {
            kv,
            identity,
            initial,
        }
    }

    /// `have` has the key of this parameter: it may be the same or
    /// conflict; any other cannot.
    fn same_key(&self, have: &str) -> bool {
        key_is(have, &self.kv.0)
    }

    fn same(&self, have: &str) -> bool {
        self.same_key(have) && self.same_value(have)
    }

    /// [`Wanted::same`] for a parameter of the same key.
    fn same_value(&self, have: &str) -> bool {
        key_value_ref(have) == self.kv
    }

    fn conflicts(&self, have: &str) -> bool {
        if !self.same_key(have) {
            return false;
        }
        let hkv = key_value_ref(have);
        if hkv == self.kv || identity_of(hkv.clone()) != self.identity {
            return false;
        }
        let (k, hv) = hkv;
        if k == "iommu" {
            let hv = hv.unwrap_or_default();
            return hv
                .split(',')
                .any(|o| o == "off" || o == "nopt" || o == "soft");
        }
        true
    }
}

/// A parameter already present where an editor looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub text: String,
    /// Where it is, for warnings (`line 7`, `/etc/default/grub line 7`).
    pub place: String,
    /// It can be removed or replaced by this edit (it is in the text being
    /// edited, not inherited from another file).
    pub editable: bool,
}

impl Existing {
    pub fn here(text: &str, place: String) -> Self {
        Self {
            text: text.to_string(),
            place,
            editable: true,
        }
    }
}

/// The parameters already present, as [`decide`], [`lint`] and
/// [`not_anywhere`] read them, by index: a list of [`Existing`], or the
/// tokens an editor found in its file, read in place (a command line of
/// millions of tokens is then not copied token by token to be compared).
pub trait Present {
    /// How many entries; indexes are `0..len()`.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn text(&self, i: usize) -> &str;
    /// See [`Existing::editable`].
    fn editable(&self, i: usize) -> bool;
    /// See [`Existing::place`]; made only for a warning.
    fn place(&self, i: usize) -> Cow<'_, str>;
    /// [`key_initial`] of entry `i`: parameters whose initial differs
    /// from a wanted one's are passed over without being read.
    fn initial(&self, i: usize) -> Option<u8> {
        key_initial(self.text(i))
    }
    /// Entry `i` is a parameter: not an expansion whose value is not
    /// known (`$X`), which is kept but never compared, removed or
    /// replaced, as if it were not in the list.
    fn is_param(&self, i: usize) -> bool {
        let _ = i;
        true
    }
}

impl Present for [Existing] {
    fn len(&self) -> usize {
        <[Existing]>::len(self)
    }
    fn text(&self, i: usize) -> &str {
        &self[i].text
    }
    fn editable(&self, i: usize) -> bool {
        self[i].editable
    }
    fn place(&self, i: usize) -> Cow<'_, str> {
        Cow::Borrowed(&self[i].place)
    }
}

impl Present for Vec<Existing> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn text(&self, i: usize) -> &str {
        self.as_slice().text(i)
    }
    fn editable(&self, i: usize) -> bool {
        self.as_slice().editable(i)
    }
    fn place(&self, i: usize) -> Cow<'_, str> {
        self.as_slice().place(i)
    }
}

/// What to do with a command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Indexes into the existing list to delete.
    pub delete: Vec<usize>,
    /// Indexes to replace in place (exliar's own older value of a parameter).
    pub replace: Vec<(usize, String)>,
    /// New parameters to append, in order.
    pub append: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
}

impl Decision {
    pub fn is_noop(&self) -> bool {
        self.delete.is_empty() && self.replace.is_empty() && self.append.is_empty()
    }
}

/// Decide how to get from `existing` to a command line with `add` and
/// without `remove`:
/// - `remove` takes out the last editable occurrence of each listed
///   parameter, byte for byte (only what exliar added; the user's own
///   parameters are never in that list);
/// - a parameter of `add` already present (same key, same value) is skipped,
///   and kept if it is also in `remove`;
/// - one whose identity matches a parameter being removed replaces it in
///   place (exliar changing its own value);
/// - one that conflicts with a user's parameter is not added: a warning says
///   which and where;
/// - anything else is appended.
pub fn decide<P: Present + ?Sized>(existing: &P, add: &[String], remove: &[String]) -> Decision {
    let mut d = Decision::default();
    // The parameters removal marked, by index, in order (a few: at most
    // one per parameter to remove), and which of them are deleted: no
    // record per parameter.
    let mut marked: Vec<usize> = Vec::new();
    // Removals first.
    let mut seen_remove: Vec<&str> = Vec::new();
    for r in remove {
        if seen_remove.contains(&r.as_str()) {
            continue;
        }
        seen_remove.push(r);
        if let Some(i) = (0..existing.len()).rev().find(|&i| {
            existing.is_param(i)
                && existing.editable(i)
                && existing.text(i) == r
                && !marked.contains(&i)
        }) {
            marked.push(i);
        }
    }
    marked.sort_unstable();
    let mut deleted = vec![true; marked.len()];
    let is_deleted =
        |deleted: &[bool], i: usize| marked.binary_search(&i).is_ok_and(|k| deleted[k]);
    // The parameters to add, in order, each once.
    let mut wants: Vec<(&String, Wanted<'_>)> = Vec::new();
    for a in add {
        if wants.iter().any(|(s, _)| same_param(s, a)) {
            continue;
        }
        wants.push((a, Wanted::new(a)));
    }
    // One pass over the parameters for all of them: for each, the first
    // parameters that are the same and the first that conflict, whether
    // removal marked them or not. One more than removal marked is enough:
    // when it is a parameter's turn, at most that many are deleted, so
    // the first of these not deleted is the first of all not deleted.
    let keep = marked.len() + 1;
    let mut same: Vec<Vec<usize>> = vec![Vec::new(); wants.len()];
    let mut conflicting: Vec<Vec<usize>> = vec![Vec::new(); wants.len()];
    if !wants.is_empty() {
        for i in 0..existing.len() {
            if !existing.is_param(i) {
                continue;
            }
            let initial = existing.initial(i);
            for (w, (_, want)) in wants.iter().enumerate() {
                if want.initial != initial {
                    continue;
                }
                let t = existing.text(i);
                if !want.same_key(t) {
                    continue;
                }
                if want.same_value(t) {
                    if same[w].len() < keep {
                        same[w].push(i);
                    }
                } else if conflicting[w].len() < keep && want.conflicts(t) {
                    conflicting[w].push(i);
                }
            }
        }
    }
    let mut replaced: Vec<(usize, String)> = Vec::new();
    for (w, (a, want)) in wants.iter().enumerate() {
        let a = *a;
        // Already present and staying: nothing to do.
        if same[w].iter().any(|&i| !is_deleted(&deleted, i)) {
            continue;
        }
        // Present but scheduled for removal (exliar's own, re-added): keep it.
        if let Some(k) = (0..marked.len())
            .rev()
            .find(|&k| deleted[k] && existing.text(marked[k]) == a)
        {
            deleted[k] = false;
            continue;
        }
        // A user's conflicting value wins; say so.
        if let Some(&i) = conflicting[w].iter().find(|&&i| !is_deleted(&deleted, i)) {
            d.warnings.push(format!(
                "`{}` ({}) conflicts with `{a}`, which exliar wants; it is left as it is and `{a}` is not added",
                existing.text(i),
                existing.place(i)
            ));
            continue;
        }
        // exliar's own older value of the same setting: replace in place.
        if let Some(i) = (0..marked.len()).find_map(|k| {
            let i = marked[k];
            (deleted[k]
                && existing.editable(i)
                && identity_of(key_value_ref(existing.text(i))) == want.identity
                && !replaced.iter().any(|(j, _)| *j == i))
            .then_some(i)
        }) {
            replaced.push((i, a.clone()));
            d.added.push(a.clone());
            continue;
        }
        d.append.push(a.clone());
        d.added.push(a.clone());
    }
    for (k, &i) in marked.iter().enumerate() {
        if deleted[k] {
            d.removed.push(existing.text(i).to_string());
            if !replaced.iter().any(|(j, _)| *j == i) {
                d.delete.push(i);
            }
        }
    }
    d.replace = replaced;
    d
}

/// For files with several entries (rEFInd lines, Limine entries) edited
/// alike: the parameters of `add` that no entry has yet. One that some
/// entry already has is added to none (so that removing exliar's
/// parameters later never touches the user's), with a warning.
/// `group` gives the entry of each existing parameter, `groups` how many
/// entries there are.
pub fn not_anywhere<P: Present + ?Sized>(
    existing: &P,
    group: &dyn Fn(usize) -> Option<usize>,
    groups: usize,
    add: &[String],
    entries: &str,
) -> (Vec<String>, Vec<String>) {
    // One pass over the parameters for all of `add`: the first that is
    // the same as each, and the entries that have it.
    let wants: Vec<Wanted<'_>> = add.iter().map(|a| Wanted::new(a)).collect();
    let mut first: Vec<Option<usize>> = vec![None; add.len()];
    let mut with: Vec<Vec<usize>> = vec![Vec::new(); add.len()];
    if !wants.is_empty() {
        for i in 0..existing.len() {
            if !existing.is_param(i) {
                continue;
            }
            let initial = existing.initial(i);
            for (w, want) in wants.iter().enumerate() {
                if want.initial != initial || !want.same(existing.text(i)) {
                    continue;
                }
                first[w].get_or_insert(i);
                if let Some(g) = group(i)
                    && with[w].last() != Some(&g)
                {
                    with[w].push(g);
                }
            }
        }
    }
    let mut keep = Vec::new();
    let mut warnings = Vec::new();
    for (w, a) in add.iter().enumerate() {
        match first[w] {
            Some(i) => {
                let with = &mut with[w];
                with.sort_unstable();
                with.dedup();
                if with.len() < groups {
                    warnings.push(format!(
                        "`{a}` is already set ({}); it is not added to the other {entries} (add it by hand where it is missing)",
                        existing.place(i)
                    ));
                }
            }
            None => keep.push(a.clone()),
        }
    }
    (keep, warnings)
}

/// Check the parameters a planner asks to add: each must be one token.
pub fn check_params(add: &[String]) -> Result<(), super::EditError> {
    for p in add {
        if !is_single_param(p) {
            return Err(super::EditError::new(
                0,
                format!("`{p}` is not a single kernel parameter"),
            ));
        }
    }
    Ok(())
}

/// Whether existing parameters carry values known to be no-ops or mistakes,
/// as warnings (`amd_iommu=on` is not a valid value: the AMD IOMMU driver
/// only knows `fullflush`, `force_enable`, `off`, ... and is on by default).
pub fn lint<P: Present + ?Sized>(existing: &P) -> Vec<String> {
    let mut w = Vec::new();
    for i in 0..existing.len() {
        if !existing.is_param(i)
            || existing.initial(i) != Some(b'a')
            || !key_is(existing.text(i), "amd_iommu")
        {
            continue;
        }
        let (k, v) = key_value_ref(existing.text(i));
        if k == "amd_iommu" && v.as_deref() == Some("on") {
            w.push(format!(
                "`{}` ({}) has no effect: `on` is not an amd_iommu option (the AMD IOMMU is enabled by default)",
                existing.text(i),
                existing.place(i)
            ));
        }
    }
    w
}

/// The CPU vendor, for the IOMMU parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuVendor {
    Intel,
    Amd,
    Other,
}

/// The firmware (boot) framebuffer that sits on the passthrough GPU, if any.
///
/// Which parameter releases it depends on which driver holds it:
/// - `efifb` (CONFIG_FB_EFI, bound to the `efi-framebuffer` platform device
///   that sysfb registers): `video=efifb:off`. fbdev drivers read
///   `video=<driver>:off` through `fb_get_options()`
///   (drivers/video/fbdev/core/fb_cmdline.c; Documentation/fb/modedb.rst,
///   Documentation/admin-guide/kernel-parameters.txt `video=`).
/// - `simpledrm` / `simplefb` (CONFIG_SYSFB_SIMPLEFB: sysfb registers a
///   `simple-framebuffer` device instead; the default on Fedora ≥ 36, Arch,
///   Debian 12 and most distribution kernels since 5.15-5.17): `video=efifb:off` does
///   nothing there, because efifb never binds. `initcall_blacklist=sysfb_init`
///   (kernel-parameters.txt `initcall_blacklist=`) keeps `sysfb_init()`
///   (drivers/firmware/sysfb.c; arch/x86/kernel/sysfb.c before 5.15) from
///   registering any firmware framebuffer device, so neither efifb, vesafb,
///   simplefb nor simpledrm claims the memory.
/// - On kernels ≥ 6.0 vfio-pci itself removes conflicting firmware
///   framebuffers when it binds a VGA-class device
///   (`aperture_remove_conflicting_pci_devices()` in `vfio_pci_vga_init()`,
///   drivers/vfio/pci/vfio_pci_core.c), so detection may pass
///   [`Framebuffer::None`] there; the parameter is still harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framebuffer {
    /// No firmware framebuffer on the passthrough GPU.
    None,
    /// efifb holds it (`/proc/fb` shows `EFI VGA`).
    Efifb,
    /// simpledrm or simplefb holds it.
    SimpleFramebuffer,
    /// vesafb, or a framebuffer whose driver is not known.
    Other,
}

/// The kernel parameters exliar asks for on this host.
///
/// - `intel_iommu=on` on Intel only when the kernel does not enable the
///   Intel IOMMU by default (CONFIG_INTEL_IOMMU_DEFAULT_ON); nothing on AMD,
///   where the IOMMU is on by default and `amd_iommu=on` is not a valid value;
/// - `iommu=pt` when asked (identity-map host DMA: no translation cost for
///   devices the host keeps);
/// - `vfio-pci.ids=` when vfio-pci is built into the kernel (a module reads
///   its ids from modprobe.d instead);
/// - `rd.driver.pre=vfio-pci` with dracut, so the initramfs loads vfio-pci
///   before the GPU driver;
/// - the framebuffer parameter of [`Framebuffer`] only when a firmware
///   framebuffer holds the passthrough GPU.
pub fn params_for_host(
    cpu_vendor: CpuVendor,
    iommu_default_on: bool,
    vfio_pci_builtin: bool,
    ids: &[String],
    dracut: bool,
    framebuffer_on_gpu: Framebuffer,
    iommu_pt: bool,
) -> Vec<String> {
    let mut v = Vec::new();
    if cpu_vendor == CpuVendor::Intel && !iommu_default_on {
        v.push("intel_iommu=on".to_string());
    }
    if iommu_pt {
        v.push("iommu=pt".to_string());
    }
    if vfio_pci_builtin && !ids.is_empty() {
        let mut uniq: Vec<String> = Vec::new();
        for id in ids {
            let id = id.to_ascii_lowercase();
            if !uniq.contains(&id) {
                uniq.push(id);
            }
        }
        v.push(format!("vfio-pci.ids={}", uniq.join(",")));
    }
    if dracut {
        v.push("rd.driver.pre=vfio-pci".to_string());
    }
    match framebuffer_on_gpu {
        Framebuffer::None => {}
        Framebuffer::Efifb => v.push("video=efifb:off".to_string()),
        Framebuffer::SimpleFramebuffer | Framebuffer::Other => {
            v.push("initcall_blacklist=sysfb_init".to_string())
        }
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ex(v: &[&str]) -> Vec<Existing> {
        v.iter()
            .enumerate()
            .map(|(i, t)| Existing::here(t, format!("token {i}")))
            .collect()
    }
    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// The parameter model as it was before it stopped copying each
    /// parameter for each comparison: the reference the proptest below
    /// holds [`decide`] to.
    mod before {
        use super::super::{Decision, Existing, LIST_KEYS};

        pub fn key_value(p: &str) -> (String, Option<String>) {
            let unquoted: String = p.chars().filter(|&c| c != '"').collect();
            match unquoted.split_once('=') {
                Some((k, v)) => (k.replace('-', "_"), Some(v.to_string())),
                None => (unquoted.replace('-', "_"), None),
            }
        }
        pub fn identity(p: &str) -> String {
            let (k, v) = key_value(p);
            if LIST_KEYS.iter().any(|l| l.replace('-', "_") == k) {
                return format!("{k}={}", v.unwrap_or_default());
            }
            if k == "video"
                && let Some(v) = v
            {
                let output = v.split(':').next().unwrap_or("");
                return format!("video={output}");
            }
            k
        }
        pub fn same_param(a: &str, b: &str) -> bool {
            key_value(a) == key_value(b)
        }
        pub fn conflicts(have: &str, want: &str) -> bool {
            if same_param(have, want) || identity(have) != identity(want) {
                return false;
            }
            let (k, hv) = key_value(have);
            if k == "iommu" {
                let hv = hv.unwrap_or_default();
                return hv
                    .split(',')
                    .any(|o| o == "off" || o == "nopt" || o == "soft");
            }
            true
        }
        pub fn decide(existing: &[Existing], add: &[String], remove: &[String]) -> Decision {
            let mut d = Decision::default();
            let mut deleted = vec![false; existing.len()];
            let mut seen_remove: Vec<&str> = Vec::new();
            for r in remove {
                if seen_remove.contains(&r.as_str()) {
                    continue;
                }
                seen_remove.push(r);
                if let Some(i) = (0..existing.len())
                    .rev()
                    .find(|&i| existing[i].editable && !deleted[i] && existing[i].text == *r)
                {
                    deleted[i] = true;
                }
            }
            let mut replaced: Vec<(usize, String)> = Vec::new();
            let mut seen_add: Vec<&str> = Vec::new();
            for a in add {
                if seen_add.iter().any(|s| same_param(s, a)) {
                    continue;
                }
                seen_add.push(a);
                if existing
                    .iter()
                    .enumerate()
                    .any(|(i, e)| !deleted[i] && same_param(&e.text, a))
                {
                    continue;
                }
                if let Some(i) = (0..existing.len())
                    .rev()
                    .find(|&i| deleted[i] && existing[i].text == *a)
                {
                    deleted[i] = false;
                    continue;
                }
                let user_conflicts: Vec<&Existing> = existing
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| !deleted[*i] && conflicts(&e.text, a))
                    .map(|(_, e)| e)
                    .collect();
                if let Some(e) = user_conflicts.first() {
                    d.warnings.push(format!(
                        "`{}` ({}) conflicts with `{a}`, which exliar wants; it is left as it is and `{a}` is not added",
                        e.text, e.place
                    ));
                    continue;
                }
                if let Some(i) = (0..existing.len()).find(|&i| {
                    deleted[i]
                        && existing[i].editable
                        && identity(&existing[i].text) == identity(a)
                        && !replaced.iter().any(|(j, _)| *j == i)
                }) {
                    replaced.push((i, a.clone()));
                    d.added.push(a.clone());
                    continue;
                }
                d.append.push(a.clone());
                d.added.push(a.clone());
            }
            for (i, e) in existing.iter().enumerate() {
                if deleted[i] {
                    d.removed.push(e.text.clone());
                    if !replaced.iter().any(|(j, _)| *j == i) {
                        d.delete.push(i);
                    }
                }
            }
            d.replace = replaced;
            d
        }
        pub fn not_anywhere(
            existing: &[Existing],
            group: &[usize],
            groups: usize,
            add: &[String],
            entries: &str,
        ) -> (Vec<String>, Vec<String>) {
            let mut keep = Vec::new();
            let mut warnings = Vec::new();
            for a in add {
                match existing.iter().find(|e| same_param(&e.text, a)) {
                    Some(e) => {
                        let mut with: Vec<usize> = existing
                            .iter()
                            .zip(group)
                            .filter(|(e, _)| same_param(&e.text, a))
                            .map(|(_, g)| *g)
                            .collect();
                        with.sort_unstable();
                        with.dedup();
                        if with.len() < groups {
                            warnings.push(format!(
                                "`{a}` is already set ({}); it is not added to the other {entries} (add it by hand where it is missing)",
                                e.place
                            ));
                        }
                    }
                    None => keep.push(a.clone()),
                }
            }
            (keep, warnings)
        }
    }

    /// Parameters drawn from a small vocabulary, so that samples share
    /// keys, values, quotes, `-`/`_` spellings, list keys and `video=`.
    fn param() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "quiet",
            "splash",
            "iommu=pt",
            "iommu=off",
            "iommu=1,nopt",
            "intel_iommu=on",
            "intel_iommu=off",
            "amd_iommu=on",
            "vfio-pci.ids=10de:2503",
            "vfio_pci.ids=10de:2503",
            "vfio-pci.ids=10de:2503,10de:228e",
            "\"vfio-pci.ids=10de:2503\"",
            "foo=\"a b\"",
            "rd.driver.pre=vfio-pci",
            "rd.driver.pre=nvme",
            "rd-driver-pre=x",
            "video=efifb:off",
            "video=efifb:on",
            "video=DP-1:1920x1080",
            "initcall_blacklist=sysfb_init",
            "console=ttyS0",
            "console=tty0",
            "a-b=c",
            "a_b=c",
            "a_b",
        ])
        .prop_map(str::to_string)
    }

    proptest! {
        #[test]
        fn decide_is_what_it_was(
            existing in prop::collection::vec((param(), any::<bool>()), 0..12),
            add in prop::collection::vec(param(), 0..6),
            remove in prop::collection::vec(param(), 0..6),
        ) {
            let existing: Vec<Existing> = existing
                .into_iter()
                .enumerate()
                .map(|(i, (text, editable))| Existing { text, place: format!("token {i}"), editable })
                .collect();
            prop_assert_eq!(decide(&existing, &add, &remove), before::decide(&existing, &add, &remove));
            // Entries: the parameters' groups, in order, some without any.
            let group: Vec<usize> = (0..existing.len()).map(|i| i / 3 + i % 2).collect();
            let mut distinct = group.clone();
            distinct.sort_unstable();
            distinct.dedup();
            for groups in [distinct.len(), distinct.len() + 1] {
                prop_assert_eq!(
                    not_anywhere(&existing, &|i| group.get(i).copied(), groups, &add, "entries"),
                    before::not_anywhere(&existing, &group, groups, &add, "entries")
                );
            }
            for e in &existing {
                for a in &add {
                    prop_assert_eq!(same_param(&e.text, a), before::same_param(&e.text, a));
                    prop_assert_eq!(conflicts(&e.text, a), before::conflicts(&e.text, a));
                    prop_assert_eq!(identity(a), before::identity(a));
                    prop_assert_eq!(key_value(a), before::key_value(a));
                    prop_assert_eq!(
                        key_is(&e.text, &key_value(a).0),
                        key_value(&e.text).0 == key_value(a).0
                    );
                    prop_assert_eq!(key_initial(&e.text), key_value(&e.text).0.bytes().next());
                }
            }
        }
    }

    #[test]
    fn tokenizer_follows_kernel_quotes() {
        assert_eq!(
            split(r#"a  foo="x y" "b c=d"	e"#).unwrap(),
            vec!["a", r#"foo="x y""#, r#""b c=d""#, "e"]
        );
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        let e = tokenize(r#"root=/x foo="bar"#).unwrap_err();
        assert_eq!(e.offset, 12);
    }

    #[test]
    fn identity_and_conflicts() {
        assert!(same_param("vfio-pci.ids=1", "vfio_pci.ids=1"));
        assert!(conflicts("intel_iommu=off", "intel_iommu=on"));
        assert!(!conflicts("iommu=1", "iommu=pt"));
        assert!(conflicts("iommu=off", "iommu=pt"));
        assert!(!conflicts("video=DP-1:1920x1080", "video=efifb:off"));
        assert!(conflicts("video=efifb:on", "video=efifb:off"));
        assert!(!conflicts("rd.driver.pre=nvme", "rd.driver.pre=vfio-pci"));
        assert!(!conflicts("quiet", "intel_iommu=on"));
    }

    #[test]
    fn decide_is_idempotent_and_respects_users() {
        let d = decide(
            &ex(&["quiet", "iommu=pt"]),
            &s(&["iommu=pt", "intel_iommu=on"]),
            &[],
        );
        assert_eq!(d.append, s(&["intel_iommu=on"]));
        let d = decide(&ex(&["intel_iommu=off"]), &s(&["intel_iommu=on"]), &[]);
        assert!(d.is_noop());
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        // exliar's own older value is replaced in place.
        let d = decide(
            &ex(&["quiet", "vfio-pci.ids=1:2"]),
            &s(&["vfio-pci.ids=1:2,3:4"]),
            &s(&["vfio-pci.ids=1:2"]),
        );
        assert_eq!(d.replace, vec![(1, "vfio-pci.ids=1:2,3:4".to_string())]);
        assert_eq!(d.removed, s(&["vfio-pci.ids=1:2"]));
        // re-adding what is being removed keeps it.
        let d = decide(&ex(&["iommu=pt"]), &s(&["iommu=pt"]), &s(&["iommu=pt"]));
        assert!(d.is_noop() && d.added.is_empty() && d.removed.is_empty());
        // remove takes the last exact occurrence only.
        let d = decide(&ex(&["iommu=pt", "x", "iommu=pt"]), &[], &s(&["iommu=pt"]));
        assert_eq!(d.delete, vec![2]);
    }

    #[test]
    fn host_params() {
        let ids = s(&["10DE:1b81", "10de:10f0", "10de:1b81"]);
        assert_eq!(
            params_for_host(
                CpuVendor::Intel,
                false,
                true,
                &ids,
                true,
                Framebuffer::Efifb,
                true
            ),
            s(&[
                "intel_iommu=on",
                "iommu=pt",
                "vfio-pci.ids=10de:1b81,10de:10f0",
                "rd.driver.pre=vfio-pci",
                "video=efifb:off"
            ])
        );
        let v = params_for_host(
            CpuVendor::Amd,
            false,
            false,
            &ids,
            false,
            Framebuffer::SimpleFramebuffer,
            false,
        );
        assert_eq!(v, s(&["initcall_blacklist=sysfb_init"]));
        assert!(
            params_for_host(
                CpuVendor::Intel,
                true,
                false,
                &[],
                false,
                Framebuffer::None,
                false
            )
            .is_empty()
        );
    }
}
