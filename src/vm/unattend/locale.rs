//! The host's language, keyboard and time zone, in the names Windows
//! Setup's answer file wants (`de-DE`, `0407:00000407`, `W. Europe Standard
//! Time`).
//!
//! Reading goes through the host root; every mapping is a pure function
//! over text. The tables are facts about Windows: the display languages
//! Windows 10/11 ship language packs for, the keyboard layout identifiers
//! (KLID) of `HKLM\SYSTEM\CurrentControlSet\Control\Keyboard Layouts`, and
//! the IANA → Windows zone pairs of Unicode CLDR's `windowsZones.xml`
//! (<https://github.com/unicode-org/cldr/blob/main/common/supplemental/windowsZones.xml>),
//! transcribed for the common zones.

use serde::{Deserialize, Serialize};

use crate::host::HostRoot;

/// What Windows is told about language, keyboard and clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLocale {
    /// Windows display language (`de-DE`): one Windows ships a language
    /// pack for (the Setup UI and `UILanguage`).
    pub ui_language: String,
    /// The host's own locale (`de-AT`), for formats (`SystemLocale`,
    /// `UserLocale`); equal to `ui_language` when the host has none.
    pub user_locale: String,
    /// Windows input locale: `LANGID:KLID` (`0407:00000407`).
    pub input_locale: String,
    /// Windows time zone name; `None`: the host's zone has no entry in the
    /// table, and the answer file says `UTC`.
    pub timezone: Option<String>,
    /// What was assumed, one line each (fallbacks, unknown values).
    pub notes: Vec<String>,
}

pub const DEFAULT_LANGUAGE: &str = "en-US";
pub const DEFAULT_INPUT: &str = "0409:00000409";

impl Default for HostLocale {
    fn default() -> Self {
        Self {
            ui_language: DEFAULT_LANGUAGE.into(),
            user_locale: DEFAULT_LANGUAGE.into(),
            input_locale: DEFAULT_INPUT.into(),
            timezone: Some("UTC".into()),
            notes: Vec::new(),
        }
    }
}

/// Read the host's locale, keyboard and time zone. Never fails: what is
/// missing or unknown falls back to en-US, the US keyboard and UTC, with
/// a note saying so.
pub fn host_locale(host: &HostRoot) -> HostLocale {
    let mut notes = Vec::new();
    let read = |rel: &str, notes: &mut Vec<String>| match host.read_optional(rel) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("{e}: not read"));
            None
        }
    };

    // Language: locale.conf (systemd), else default/locale (Debian).
    let mut lang = None;
    for file in ["etc/locale.conf", "etc/default/locale"] {
        if let Some(text) = read(file, &mut notes)
            && let Some(v) = shell_var(&text, "LANG").filter(|v| !v.is_empty())
        {
            lang = Some((file, v));
            break;
        }
    }
    let (ui_language, user_locale) = match &lang {
        Some((file, v)) => {
            let (ui, user, note) = languages_for(v);
            if let Some(n) = note {
                notes.push(format!("{}: {n}", host.display(std::path::Path::new(file))));
            }
            (ui, user)
        }
        None => {
            notes.push(format!(
                "no LANG in /etc/locale.conf or /etc/default/locale: Windows gets {DEFAULT_LANGUAGE}"
            ));
            (DEFAULT_LANGUAGE.to_string(), DEFAULT_LANGUAGE.to_string())
        }
    };

    // Keyboard: vconsole.conf's KEYMAP (or its XKBLAYOUT), else
    // default/keyboard's XKBLAYOUT/XKBVARIANT.
    let mut input = None;
    if let Some(text) = read("etc/vconsole.conf", &mut notes) {
        if let Some(km) = shell_var(&text, "KEYMAP").filter(|v| !v.is_empty()) {
            input = Some(("KEYMAP", km.clone(), input_locale_for_keymap(&km)));
        } else if let Some(l) = shell_var(&text, "XKBLAYOUT").filter(|v| !v.is_empty()) {
            let var = shell_var(&text, "XKBVARIANT").unwrap_or_default();
            input = Some(("XKBLAYOUT", l.clone(), input_locale_for_xkb(&l, &var)));
        }
    }
    if input.is_none()
        && let Some(text) = read("etc/default/keyboard", &mut notes)
        && let Some(l) = shell_var(&text, "XKBLAYOUT").filter(|v| !v.is_empty())
    {
        let var = shell_var(&text, "XKBVARIANT").unwrap_or_default();
        input = Some(("XKBLAYOUT", l.clone(), input_locale_for_xkb(&l, &var)));
    }
    let input_locale = match input {
        Some((_, _, Some(il))) => il.to_string(),
        Some((key, v, None)) => {
            notes.push(format!(
                "keyboard {key}={v:?} is not in exliar's table: Windows gets the US keyboard ({DEFAULT_INPUT})"
            ));
            DEFAULT_INPUT.to_string()
        }
        None => {
            notes.push(format!(
                "no keyboard in /etc/vconsole.conf or /etc/default/keyboard: Windows gets the US keyboard ({DEFAULT_INPUT})"
            ));
            DEFAULT_INPUT.to_string()
        }
    };

    // Time zone: the /etc/localtime link, else /etc/timezone (Debian).
    let zone = match host.link_target("etc/localtime") {
        Ok(Some(target)) => iana_from_localtime(&target.to_string_lossy()),
        Ok(None) => None,
        // A copied file, not a link: /etc/timezone may name it.
        Err(e) if e.source.kind() == std::io::ErrorKind::InvalidInput => None,
        Err(e) => {
            notes.push(format!("{e}: not read"));
            None
        }
    }
    .or_else(|| {
        read("etc/timezone", &mut notes)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    });
    let timezone = match &zone {
        Some(z) => match windows_zone(z) {
            Some(w) => Some(w.to_string()),
            None => {
                notes.push(format!(
                    "time zone {z:?} is not in exliar's table: Windows gets UTC (set it in Windows' settings)"
                ));
                None
            }
        },
        None => {
            notes.push(
                "no time zone (/etc/localtime is not a link into zoneinfo, no /etc/timezone): Windows gets UTC"
                    .into(),
            );
            None
        }
    };

    HostLocale {
        ui_language,
        user_locale,
        input_locale,
        timezone,
        notes,
    }
}

/// The value of `KEY=value` in a shell-style assignment file
/// (`locale.conf`, `vconsole.conf`, `default/keyboard`): the last
/// assignment wins; quotes are removed; comments are skipped.
pub fn shell_var(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        let v = v.trim();
        let v = if let Some(inner) = v.strip_prefix('"') {
            inner.split('"').next().unwrap_or("")
        } else if let Some(inner) = v.strip_prefix('\'') {
            inner.split('\'').next().unwrap_or("")
        } else {
            v.split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .unwrap_or("")
        };
        found = Some(v.to_string());
    }
    found
}

/// The display languages Windows 10 and 11 have full language packs for.
/// The first entry of a language is its default (`en` → `en-US`).
const WINDOWS_LANGUAGES: &[&str] = &[
    "en-US",
    "en-GB",
    "ar-SA",
    "bg-BG",
    "cs-CZ",
    "da-DK",
    "de-DE",
    "el-GR",
    "es-ES",
    "es-MX",
    "et-EE",
    "fi-FI",
    "fr-FR",
    "fr-CA",
    "he-IL",
    "hr-HR",
    "hu-HU",
    "it-IT",
    "ja-JP",
    "ko-KR",
    "lt-LT",
    "lv-LV",
    "nb-NO",
    "nl-NL",
    "pl-PL",
    "pt-PT",
    "pt-BR",
    "ro-RO",
    "ru-RU",
    "sk-SK",
    "sl-SI",
    "sr-Latn-RS",
    "sv-SE",
    "th-TH",
    "tr-TR",
    "uk-UA",
    "zh-CN",
    "zh-TW",
];

/// A POSIX locale name (`de_DE.UTF-8`, `sr_RS@latin`) as a language tag
/// (`de-DE`, `sr-RS`): `None` for `C`, `POSIX` and what is not
/// `language_TERRITORY`.
pub fn locale_tag(lang: &str) -> Option<String> {
    let base = lang.split(['.', '@']).next().unwrap_or("");
    let (l, c) = base.split_once('_')?;
    let lang_ok = (2..=3).contains(&l.len()) && l.chars().all(|ch| ch.is_ascii_lowercase());
    let country_ok = c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase());
    (lang_ok && country_ok).then(|| format!("{l}-{c}"))
}

/// For a `LANG` value: the Windows display language, the locale for
/// formats, and a note when something was assumed.
pub fn languages_for(lang: &str) -> (String, String, Option<String>) {
    let Some(tag) = locale_tag(lang) else {
        return (
            DEFAULT_LANGUAGE.into(),
            DEFAULT_LANGUAGE.into(),
            Some(format!(
                "LANG={lang:?} names no language and country: Windows gets {DEFAULT_LANGUAGE}"
            )),
        );
    };
    if let Some(w) = WINDOWS_LANGUAGES
        .iter()
        .find(|w| w.eq_ignore_ascii_case(&tag))
    {
        return ((*w).to_string(), tag, None);
    }
    let (l, c) = tag.split_once('-').unwrap_or((&tag, ""));
    // Languages whose Windows pack has another name.
    let special = match (l, c) {
        ("nn" | "no", _) => Some("nb-NO"),
        ("sr", _) => Some("sr-Latn-RS"),
        ("zh", "HK" | "MO") => Some("zh-TW"),
        _ => None,
    };
    let same_language = || {
        WINDOWS_LANGUAGES
            .iter()
            .find(|w| w.split('-').next() == Some(l))
            .copied()
    };
    match special.or_else(same_language) {
        Some(w) => (
            w.to_string(),
            tag.clone(),
            Some(format!(
                "Windows has no {tag} display language: it shows {w}, with {tag} formats"
            )),
        ),
        None => (
            DEFAULT_LANGUAGE.into(),
            tag.clone(),
            Some(format!(
                "Windows has no display language for {tag}: it shows {DEFAULT_LANGUAGE}, with {tag} formats"
            )),
        ),
    }
}

/// Keyboard layouts: exliar's key (the XKB layout, with the variant for
/// the few where it picks another Windows layout) → Windows input locale.
const LAYOUTS: &[(&str, &str)] = &[
    ("us", "0409:00000409"),
    ("us-intl", "0409:00020409"),
    ("us-dvorak", "0409:00010409"),
    ("gb", "0809:00000809"),
    ("ie", "1809:00001809"),
    ("de", "0407:00000407"),
    ("at", "0c07:00000407"),
    ("fr", "040c:0000040c"),
    ("es", "0c0a:0000040a"),
    ("latam", "080a:0000080a"),
    ("it", "0410:00000410"),
    ("pt", "0816:00000816"),
    ("br", "0416:00010416"),
    ("ru", "0419:00000419"),
    ("ua", "0422:00020422"),
    ("by", "0423:00000423"),
    ("pl", "0415:00000415"),
    ("nl", "0413:00000413"),
    ("be", "080c:0000080c"),
    ("se", "041d:0000041d"),
    ("no", "0414:00000414"),
    ("dk", "0406:00000406"),
    ("fi", "040b:0000040b"),
    ("is", "040f:0000040f"),
    ("ee", "0425:00000425"),
    ("lv", "0426:00020426"),
    ("lt", "0427:00010427"),
    ("ch", "0807:00000807"),
    ("ch-fr", "100c:0000100c"),
    ("jp", "0411:00000411"),
    ("kr", "0412:00000412"),
    ("cn", "0804:00000804"),
    ("tw", "0404:00000404"),
    ("cz", "0405:00000405"),
    ("sk", "041b:0000041b"),
    ("hu", "040e:0000040e"),
    ("si", "0424:00000424"),
    ("hr", "041a:0000041a"),
    ("rs", "241a:0000081a"),
    ("ro", "0418:00010418"),
    ("bg", "0402:00030402"),
    ("gr", "0408:00000408"),
    ("tr", "041f:0000041f"),
    ("tr-f", "041f:0001041f"),
    ("il", "040d:0002040d"),
    ("ca", "0c0c:00001009"),
    ("ca-multix", "0c0c:00011009"),
    ("ca-eng", "1009:00000409"),
    ("in", "4009:00004009"),
];

fn layout(key: &str) -> Option<&'static str> {
    LAYOUTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// A console keymap name (`de-latin1-nodeadkeys`, `sg`, `br-abnt2`) as a
/// Windows input locale.
pub fn input_locale_for_keymap(keymap: &str) -> Option<&'static str> {
    let km = keymap.trim().to_ascii_lowercase();
    let km = km
        .strip_suffix(".map.gz")
        .or_else(|| km.strip_suffix(".map"))
        .unwrap_or(&km);
    let km = km.strip_prefix("mac-").unwrap_or(km);
    // Console keymaps whose name is not their country's XKB layout.
    let key = match km {
        "uk" => "gb",
        "sg" | "sg-latin1" | "de_ch-latin1" | "de_ch" | "ch-de" => "ch",
        "fr_ch" | "fr_ch-latin1" | "ch-fr" => "ch-fr",
        "cf" | "ca-fr" | "ca" => "ca",
        "la-latin1" | "latam" => "latam",
        "jp106" | "jp" => "jp",
        "trq" | "tr_q-latin5" => "tr",
        "trf" | "tr_f-latin5" => "tr-f",
        "sv-latin1" => "se",
        "us-acentos" | "us-intl" => "us-intl",
        "dvorak" | "us-dvorak" => "us-dvorak",
        "slovene" => "si",
        "croat" => "hr",
        "ua-utf" | "ua" => "ua",
        "by" | "bywin-cp1251" => "by",
        "kr" | "ko" => "kr",
        "cz-qwertz" | "cz-us-qwertz" | "cz-lat2" | "cz" => "cz",
        "sk-qwerty" | "sk-qwertz" | "sk-prog-qwerty" => "sk",
        "nl2" => "nl",
        "pl2" | "pl1" => "pl",
        other => other.split(['-', '_']).next().unwrap_or(other),
    };
    // Console names that differ from the XKB layout code.
    let key = match key {
        "et" => "ee",
        "dk" | "da" => "dk",
        "sv" => "se",
        "nb" => "no",
        "cs" => "cz",
        "sr" => "rs",
        "he" => "il",
        "el" => "gr",
        "ja" => "jp",
        "lt.baltic" | "lt.l4" => "lt",
        k => k,
    };
    layout(key)
}

/// An XKB layout and variant (`/etc/default/keyboard`'s `XKBLAYOUT="de,us"`
/// `XKBVARIANT="nodeadkeys,"`: the first of each) as a Windows input locale.
pub fn input_locale_for_xkb(layouts: &str, variants: &str) -> Option<&'static str> {
    let l = layouts
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let v = variants
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let key = match (l.as_str(), v.as_str()) {
        ("us", "intl" | "alt-intl") => "us-intl",
        ("us", "dvorak") => "us-dvorak",
        ("ch", "fr" | "fr_nodeadkeys" | "fr_mac") => "ch-fr",
        ("ca", "multix") => "ca-multix",
        ("ca", "eng") => "ca-eng",
        ("tr", "f") => "tr-f",
        ("uk", _) => "gb",
        (l, _) => l,
    };
    layout(key)
}

/// The zone name in an `/etc/localtime` link target
/// (`../usr/share/zoneinfo/Europe/Berlin`, `/usr/share/zoneinfo/posix/UTC`).
pub fn iana_from_localtime(target: &str) -> Option<String> {
    let (_, rest) = target.rsplit_once("zoneinfo/")?;
    let rest = rest
        .strip_prefix("posix/")
        .or_else(|| rest.strip_prefix("right/"))
        .unwrap_or(rest);
    (!rest.is_empty()
        && !rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".."))
    .then(|| rest.to_string())
}

/// IANA zone → Windows zone name (CLDR windowsZones, the common zones).
const ZONES: &[(&str, &[&str])] = &[
    (
        "UTC",
        &[
            "UTC",
            "Etc/UTC",
            "Etc/UCT",
            "UCT",
            "Etc/Universal",
            "Universal",
            "Etc/Zulu",
            "Zulu",
            "Etc/GMT",
            "GMT",
            "Etc/Greenwich",
            "Greenwich",
            "Etc/GMT0",
            "GMT0",
        ],
    ),
    (
        "GMT Standard Time",
        &[
            "Europe/London",
            "Europe/Dublin",
            "Europe/Lisbon",
            "Europe/Guernsey",
            "Europe/Isle_of_Man",
            "Europe/Jersey",
            "Atlantic/Canary",
            "Atlantic/Faroe",
            "Atlantic/Madeira",
            "GB",
            "Eire",
            "Portugal",
        ],
    ),
    (
        "Greenwich Standard Time",
        &[
            "Atlantic/Reykjavik",
            "Iceland",
            "Africa/Abidjan",
            "Africa/Accra",
            "Africa/Dakar",
        ],
    ),
    (
        "W. Europe Standard Time",
        &[
            "Europe/Berlin",
            "Europe/Amsterdam",
            "Europe/Andorra",
            "Europe/Busingen",
            "Europe/Gibraltar",
            "Europe/Luxembourg",
            "Europe/Malta",
            "Europe/Monaco",
            "Europe/Oslo",
            "Europe/Rome",
            "Europe/San_Marino",
            "Europe/Stockholm",
            "Europe/Vaduz",
            "Europe/Vatican",
            "Europe/Vienna",
            "Europe/Zurich",
            "Arctic/Longyearbyen",
        ],
    ),
    (
        "Romance Standard Time",
        &[
            "Europe/Paris",
            "Europe/Brussels",
            "Europe/Copenhagen",
            "Europe/Madrid",
            "Africa/Ceuta",
        ],
    ),
    (
        "Central European Standard Time",
        &[
            "Europe/Warsaw",
            "Europe/Sarajevo",
            "Europe/Skopje",
            "Europe/Zagreb",
            "Poland",
        ],
    ),
    (
        "Central Europe Standard Time",
        &[
            "Europe/Budapest",
            "Europe/Prague",
            "Europe/Bratislava",
            "Europe/Belgrade",
            "Europe/Ljubljana",
            "Europe/Podgorica",
            "Europe/Tirane",
        ],
    ),
    (
        "GTB Standard Time",
        &[
            "Europe/Athens",
            "Europe/Bucharest",
            "Asia/Nicosia",
            "Europe/Nicosia",
            "Asia/Famagusta",
        ],
    ),
    (
        "FLE Standard Time",
        &[
            "Europe/Helsinki",
            "Europe/Kiev",
            "Europe/Kyiv",
            "Europe/Mariehamn",
            "Europe/Riga",
            "Europe/Sofia",
            "Europe/Tallinn",
            "Europe/Vilnius",
            "Europe/Uzhgorod",
            "Europe/Zaporozhye",
        ],
    ),
    ("E. Europe Standard Time", &["Europe/Chisinau"]),
    ("Kaliningrad Standard Time", &["Europe/Kaliningrad"]),
    (
        "Russian Standard Time",
        &["Europe/Moscow", "Europe/Kirov", "Europe/Simferopol", "W-SU"],
    ),
    ("Belarus Standard Time", &["Europe/Minsk"]),
    (
        "Turkey Standard Time",
        &["Europe/Istanbul", "Asia/Istanbul", "Turkey"],
    ),
    ("Russia Time Zone 3", &["Europe/Samara"]),
    (
        "Israel Standard Time",
        &["Asia/Jerusalem", "Asia/Tel_Aviv", "Israel"],
    ),
    ("Egypt Standard Time", &["Africa/Cairo", "Egypt"]),
    (
        "South Africa Standard Time",
        &["Africa/Johannesburg", "Africa/Maputo", "Africa/Harare"],
    ),
    (
        "W. Central Africa Standard Time",
        &[
            "Africa/Lagos",
            "Africa/Algiers",
            "Africa/Kinshasa",
            "Africa/Luanda",
            "Africa/Tunis",
        ],
    ),
    (
        "E. Africa Standard Time",
        &[
            "Africa/Nairobi",
            "Africa/Addis_Ababa",
            "Africa/Dar_es_Salaam",
            "Africa/Kampala",
        ],
    ),
    (
        "Morocco Standard Time",
        &["Africa/Casablanca", "Africa/El_Aaiun"],
    ),
    (
        "Arab Standard Time",
        &[
            "Asia/Riyadh",
            "Asia/Kuwait",
            "Asia/Aden",
            "Asia/Bahrain",
            "Asia/Qatar",
        ],
    ),
    ("Arabic Standard Time", &["Asia/Baghdad"]),
    ("Arabian Standard Time", &["Asia/Dubai", "Asia/Muscat"]),
    ("Iran Standard Time", &["Asia/Tehran", "Iran"]),
    ("Afghanistan Standard Time", &["Asia/Kabul"]),
    ("Pakistan Standard Time", &["Asia/Karachi"]),
    (
        "West Asia Standard Time",
        &["Asia/Tashkent", "Asia/Samarkand"],
    ),
    ("Ekaterinburg Standard Time", &["Asia/Yekaterinburg"]),
    ("India Standard Time", &["Asia/Kolkata", "Asia/Calcutta"]),
    ("Sri Lanka Standard Time", &["Asia/Colombo"]),
    ("Nepal Standard Time", &["Asia/Kathmandu", "Asia/Katmandu"]),
    (
        "Central Asia Standard Time",
        &["Asia/Almaty", "Asia/Bishkek"],
    ),
    ("Bangladesh Standard Time", &["Asia/Dhaka", "Asia/Dacca"]),
    ("N. Central Asia Standard Time", &["Asia/Novosibirsk"]),
    ("Myanmar Standard Time", &["Asia/Yangon", "Asia/Rangoon"]),
    (
        "SE Asia Standard Time",
        &[
            "Asia/Bangkok",
            "Asia/Jakarta",
            "Asia/Ho_Chi_Minh",
            "Asia/Saigon",
            "Asia/Phnom_Penh",
            "Asia/Vientiane",
        ],
    ),
    ("North Asia Standard Time", &["Asia/Krasnoyarsk"]),
    (
        "China Standard Time",
        &[
            "Asia/Shanghai",
            "Asia/Chongqing",
            "Asia/Harbin",
            "Asia/Hong_Kong",
            "Asia/Macau",
            "PRC",
            "Hongkong",
        ],
    ),
    ("Taipei Standard Time", &["Asia/Taipei", "ROC"]),
    (
        "Singapore Standard Time",
        &[
            "Asia/Singapore",
            "Asia/Kuala_Lumpur",
            "Asia/Manila",
            "Asia/Makassar",
            "Singapore",
        ],
    ),
    ("W. Australia Standard Time", &["Australia/Perth"]),
    ("North Asia East Standard Time", &["Asia/Irkutsk"]),
    ("Tokyo Standard Time", &["Asia/Tokyo", "Japan"]),
    ("Korea Standard Time", &["Asia/Seoul", "ROK"]),
    ("Yakutsk Standard Time", &["Asia/Yakutsk"]),
    (
        "Cen. Australia Standard Time",
        &["Australia/Adelaide", "Australia/Broken_Hill"],
    ),
    ("AUS Central Standard Time", &["Australia/Darwin"]),
    (
        "E. Australia Standard Time",
        &["Australia/Brisbane", "Australia/Lindeman"],
    ),
    (
        "AUS Eastern Standard Time",
        &[
            "Australia/Sydney",
            "Australia/Melbourne",
            "Australia/Canberra",
            "Australia/ACT",
            "Australia/NSW",
            "Australia/Victoria",
        ],
    ),
    ("Tasmania Standard Time", &["Australia/Hobart"]),
    ("Vladivostok Standard Time", &["Asia/Vladivostok"]),
    (
        "New Zealand Standard Time",
        &["Pacific/Auckland", "NZ", "Antarctica/McMurdo"],
    ),
    ("Fiji Standard Time", &["Pacific/Fiji"]),
    ("Hawaiian Standard Time", &["Pacific/Honolulu", "US/Hawaii"]),
    (
        "Alaskan Standard Time",
        &[
            "America/Anchorage",
            "America/Juneau",
            "America/Nome",
            "America/Sitka",
            "America/Yakutat",
            "US/Alaska",
        ],
    ),
    (
        "Pacific Standard Time",
        &[
            "America/Los_Angeles",
            "America/Vancouver",
            "US/Pacific",
            "PST8PDT",
        ],
    ),
    (
        "Pacific Standard Time (Mexico)",
        &["America/Tijuana", "America/Ensenada"],
    ),
    (
        "US Mountain Standard Time",
        &[
            "America/Phoenix",
            "US/Arizona",
            "America/Creston",
            "America/Dawson_Creek",
        ],
    ),
    (
        "Mountain Standard Time",
        &[
            "America/Denver",
            "America/Edmonton",
            "America/Boise",
            "US/Mountain",
            "MST7MDT",
        ],
    ),
    (
        "Canada Central Standard Time",
        &["America/Regina", "America/Swift_Current"],
    ),
    (
        "Central America Standard Time",
        &[
            "America/Guatemala",
            "America/Costa_Rica",
            "America/El_Salvador",
            "America/Managua",
            "America/Tegucigalpa",
        ],
    ),
    (
        "Central Standard Time",
        &[
            "America/Chicago",
            "America/Winnipeg",
            "America/Matamoros",
            "America/Menominee",
            "US/Central",
            "CST6CDT",
        ],
    ),
    (
        "Central Standard Time (Mexico)",
        &[
            "America/Mexico_City",
            "America/Monterrey",
            "America/Merida",
            "America/Bahia_Banderas",
        ],
    ),
    (
        "SA Pacific Standard Time",
        &[
            "America/Bogota",
            "America/Lima",
            "America/Guayaquil",
            "America/Panama",
            "America/Jamaica",
        ],
    ),
    (
        "Eastern Standard Time",
        &[
            "America/New_York",
            "America/Detroit",
            "America/Toronto",
            "America/Montreal",
            "America/Nassau",
            "America/Kentucky/Louisville",
            "America/Louisville",
            "US/Eastern",
            "US/Michigan",
            "EST5EDT",
        ],
    ),
    (
        "US Eastern Standard Time",
        &[
            "America/Indiana/Indianapolis",
            "America/Indianapolis",
            "US/East-Indiana",
        ],
    ),
    ("Venezuela Standard Time", &["America/Caracas"]),
    (
        "Atlantic Standard Time",
        &[
            "America/Halifax",
            "Atlantic/Bermuda",
            "America/Glace_Bay",
            "America/Moncton",
            "Canada/Atlantic",
        ],
    ),
    (
        "SA Western Standard Time",
        &[
            "America/La_Paz",
            "America/Puerto_Rico",
            "America/Santo_Domingo",
            "America/Manaus",
            "America/Port_of_Spain",
            "America/Barbados",
        ],
    ),
    ("Pacific SA Standard Time", &["America/Santiago"]),
    (
        "Newfoundland Standard Time",
        &["America/St_Johns", "Canada/Newfoundland"],
    ),
    (
        "E. South America Standard Time",
        &["America/Sao_Paulo", "Brazil/East"],
    ),
    (
        "Argentina Standard Time",
        &[
            "America/Argentina/Buenos_Aires",
            "America/Buenos_Aires",
            "America/Argentina/Cordoba",
            "America/Cordoba",
            "America/Argentina/Mendoza",
        ],
    ),
    ("Montevideo Standard Time", &["America/Montevideo"]),
    ("Paraguay Standard Time", &["America/Asuncion"]),
    (
        "SA Eastern Standard Time",
        &[
            "America/Cayenne",
            "America/Fortaleza",
            "America/Belem",
            "America/Recife",
            "America/Paramaribo",
        ],
    ),
];

/// The Windows time zone name for an IANA zone (`Europe/Berlin` →
/// `W. Europe Standard Time`); `None` when the table has no entry.
pub fn windows_zone(iana: &str) -> Option<&'static str> {
    ZONES
        .iter()
        .find(|(_, names)| names.contains(&iana))
        .map(|(w, _)| *w)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn lang_tags() {
        assert_eq!(locale_tag("de_DE.UTF-8").as_deref(), Some("de-DE"));
        assert_eq!(locale_tag("sr_RS@latin").as_deref(), Some("sr-RS"));
        assert_eq!(locale_tag("C.UTF-8"), None);
        assert_eq!(locale_tag("POSIX"), None);
        assert_eq!(locale_tag("de"), None);
        assert_eq!(locale_tag("DE_de"), None);
    }

    #[test]
    fn display_language_and_formats() {
        assert_eq!(
            languages_for("de_DE.UTF-8"),
            ("de-DE".into(), "de-DE".into(), None)
        );
        assert_eq!(
            languages_for("en_GB.utf8"),
            ("en-GB".into(), "en-GB".into(), None)
        );
        let (ui, user, note) = languages_for("de_AT.UTF-8");
        assert_eq!((ui.as_str(), user.as_str()), ("de-DE", "de-AT"));
        assert!(note.is_some_and(|n| n.contains("de-AT")));
        assert_eq!(languages_for("nn_NO.UTF-8").0, "nb-NO");
        assert_eq!(languages_for("sr_RS.UTF-8").0, "sr-Latn-RS");
        assert_eq!(languages_for("zh_HK.UTF-8").0, "zh-TW");
        assert_eq!(languages_for("en_IE.UTF-8").0, "en-US");
        let (ui, user, note) = languages_for("C.UTF-8");
        assert_eq!((ui.as_str(), user.as_str()), ("en-US", "en-US"));
        assert!(note.is_some_and(|n| n.contains("C.UTF-8")));
        let (ui, user, note) = languages_for("sw_KE.UTF-8");
        assert_eq!((ui.as_str(), user.as_str()), ("en-US", "sw-KE"));
        assert!(note.is_some());
    }

    #[test]
    fn keymaps() {
        for (km, want) in [
            ("de-latin1", "0407:00000407"),
            ("de-latin1-nodeadkeys", "0407:00000407"),
            ("de", "0407:00000407"),
            ("us", "0409:00000409"),
            ("uk", "0809:00000809"),
            ("fr-latin9", "040c:0000040c"),
            ("es", "0c0a:0000040a"),
            ("it", "0410:00000410"),
            ("pt-latin1", "0816:00000816"),
            ("br-abnt2", "0416:00010416"),
            ("ru", "0419:00000419"),
            ("pl2", "0415:00000415"),
            ("nl", "0413:00000413"),
            ("sv-latin1", "041d:0000041d"),
            ("se-lat6", "041d:0000041d"),
            ("no-latin1", "0414:00000414"),
            ("dk-latin1", "0406:00000406"),
            ("fi", "040b:0000040b"),
            ("sg-latin1", "0807:00000807"),
            ("fr_CH-latin1", "100c:0000100c"),
            ("jp106", "0411:00000411"),
            ("cz-qwertz", "0405:00000405"),
            ("hu", "040e:0000040e"),
            ("trq", "041f:0000041f"),
            ("cf", "0c0c:00001009"),
            ("la-latin1", "080a:0000080a"),
            ("be-latin1", "080c:0000080c"),
            ("mac-de-latin1", "0407:00000407"),
        ] {
            assert_eq!(input_locale_for_keymap(km), Some(want), "{km}");
        }
        assert_eq!(input_locale_for_keymap("klingon"), None);
        assert_eq!(input_locale_for_keymap(""), None);
    }

    #[test]
    fn xkb_layouts() {
        assert_eq!(
            input_locale_for_xkb("de", "nodeadkeys"),
            Some("0407:00000407")
        );
        assert_eq!(input_locale_for_xkb("de,us", ""), Some("0407:00000407"));
        assert_eq!(input_locale_for_xkb("us", "intl"), Some("0409:00020409"));
        assert_eq!(input_locale_for_xkb("ch", ""), Some("0807:00000807"));
        assert_eq!(input_locale_for_xkb("ch", "fr"), Some("100c:0000100c"));
        assert_eq!(input_locale_for_xkb("gb", ""), Some("0809:00000809"));
        assert_eq!(input_locale_for_xkb("kr", "kr104"), Some("0412:00000412"));
        assert_eq!(input_locale_for_xkb("cn", ""), Some("0804:00000804"));
        assert_eq!(input_locale_for_xkb("ca", "multix"), Some("0c0c:00011009"));
        assert_eq!(input_locale_for_xkb("latam", ""), Some("080a:0000080a"));
        assert_eq!(input_locale_for_xkb("xx", ""), None);
    }

    #[test]
    fn zones() {
        assert_eq!(
            iana_from_localtime("../usr/share/zoneinfo/Europe/Berlin").as_deref(),
            Some("Europe/Berlin")
        );
        assert_eq!(
            iana_from_localtime("/usr/share/zoneinfo/posix/America/New_York").as_deref(),
            Some("America/New_York")
        );
        assert_eq!(iana_from_localtime("/etc/zoneinfo/"), None);
        assert_eq!(iana_from_localtime("/usr/share/zoneinfo/../x"), None);
        assert_eq!(iana_from_localtime("/somewhere/else"), None);
        assert_eq!(
            windows_zone("Europe/Berlin"),
            Some("W. Europe Standard Time")
        );
        assert_eq!(
            windows_zone("America/New_York"),
            Some("Eastern Standard Time")
        );
        assert_eq!(windows_zone("Asia/Tokyo"), Some("Tokyo Standard Time"));
        assert_eq!(windows_zone("Etc/UTC"), Some("UTC"));
        assert_eq!(windows_zone("Europe/London"), Some("GMT Standard Time"));
        assert_eq!(windows_zone("Mars/Olympus_Mons"), None);
    }

    #[test]
    fn zone_table_has_no_duplicates() {
        let mut seen = std::collections::BTreeSet::new();
        for (w, names) in ZONES {
            assert!(seen.insert(*w), "{w} twice");
            for n in *names {
                assert_eq!(windows_zone(n), Some(*w), "{n} maps to two zones");
            }
        }
        let mut keys = std::collections::BTreeSet::new();
        for (k, v) in LAYOUTS {
            assert!(keys.insert(*k), "{k} twice");
            let (lang, klid) = v.split_once(':').unwrap();
            assert!(lang.len() == 4 && klid.len() == 8, "{v}");
            assert!(v.chars().all(|c| c == ':' || c.is_ascii_hexdigit()), "{v}");
        }
    }

    #[test]
    fn shell_vars() {
        let t =
            "# comment\nLANG=\"de_DE.UTF-8\"\nLC_TIME=en_GB.UTF-8 # x\nexport KEYMAP='de-latin1'\n";
        assert_eq!(shell_var(t, "LANG").as_deref(), Some("de_DE.UTF-8"));
        assert_eq!(shell_var(t, "LC_TIME").as_deref(), Some("en_GB.UTF-8"));
        assert_eq!(shell_var(t, "KEYMAP").as_deref(), Some("de-latin1"));
        assert_eq!(shell_var(t, "LANGUAGE"), None);
        assert_eq!(shell_var("A=1\nA=2\n", "A").as_deref(), Some("2"));
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn arch_like_host() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "etc/locale.conf", "LANG=de_DE.UTF-8\n");
        write(
            d.path(),
            "etc/vconsole.conf",
            "KEYMAP=de-latin1\nFONT=lat9w-16\n",
        );
        write(d.path(), "usr/share/zoneinfo/Europe/Berlin", "TZif");
        std::os::unix::fs::symlink(
            "../usr/share/zoneinfo/Europe/Berlin",
            d.path().join("etc/localtime"),
        )
        .unwrap();
        let l = host_locale(&HostRoot::new(d.path()));
        assert_eq!(l.ui_language, "de-DE");
        assert_eq!(l.user_locale, "de-DE");
        assert_eq!(l.input_locale, "0407:00000407");
        assert_eq!(l.timezone.as_deref(), Some("W. Europe Standard Time"));
        assert!(l.notes.is_empty(), "{:?}", l.notes);
    }

    #[test]
    fn debian_like_host() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "etc/default/locale",
            "#  File generated by update-locale\nLANG=\"fr_CH.UTF-8\"\n",
        );
        write(
            d.path(),
            "etc/default/keyboard",
            "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"ch\"\nXKBVARIANT=\"fr\"\nXKBOPTIONS=\"\"\n",
        );
        write(d.path(), "etc/timezone", "Europe/Zurich\n");
        let l = host_locale(&HostRoot::new(d.path()));
        assert_eq!(l.ui_language, "fr-FR");
        assert_eq!(l.user_locale, "fr-CH");
        assert_eq!(l.input_locale, "100c:0000100c");
        assert_eq!(l.timezone.as_deref(), Some("W. Europe Standard Time"));
        assert_eq!(l.notes.len(), 1, "{:?}", l.notes);
        assert!(l.notes[0].contains("fr-CH"));
    }

    #[test]
    fn empty_host_falls_back_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let l = host_locale(&HostRoot::new(d.path()));
        assert_eq!(l.ui_language, "en-US");
        assert_eq!(l.input_locale, "0409:00000409");
        assert_eq!(l.timezone, None);
        assert_eq!(l.notes.len(), 3, "{:?}", l.notes);
        assert!(l.notes.iter().any(|n| n.contains("LANG")));
        assert!(l.notes.iter().any(|n| n.contains("keyboard")));
        assert!(l.notes.iter().any(|n| n.contains("UTC")));
    }

    #[test]
    fn unknown_values_fall_back_and_say_so() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "etc/locale.conf", "LANG=C.UTF-8\n");
        write(d.path(), "etc/vconsole.conf", "KEYMAP=klingon\n");
        std::fs::create_dir_all(d.path().join("usr/share/zoneinfo/Mars")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/share/zoneinfo/Mars/Olympus_Mons",
            d.path().join("etc/localtime"),
        )
        .unwrap();
        let l = host_locale(&HostRoot::new(d.path()));
        assert_eq!(l.ui_language, "en-US");
        assert_eq!(l.input_locale, "0409:00000409");
        assert_eq!(l.timezone, None);
        assert!(
            l.notes.iter().any(|n| n.contains("C.UTF-8")),
            "{:?}",
            l.notes
        );
        assert!(
            l.notes.iter().any(|n| n.contains("klingon")),
            "{:?}",
            l.notes
        );
        assert!(
            l.notes.iter().any(|n| n.contains("Mars/Olympus_Mons")),
            "{:?}",
            l.notes
        );
    }

    #[test]
    fn vconsole_xkb_when_no_keymap() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "etc/vconsole.conf",
            "XKBLAYOUT=us\nXKBVARIANT=intl\n",
        );
        let l = host_locale(&HostRoot::new(d.path()));
        assert_eq!(l.input_locale, "0409:00020409");
    }
}
