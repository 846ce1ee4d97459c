//! What each simulated make says and speaks: identity text, boot and background URCs, and which
//! vendor command families exist. Data only; the state machine in `machine.rs` decides when.
//!
//! The answer shapes are the real modem output the parsers' tests carry (src/parse/*.rs), so a
//! profile's queries parse against the simulator exactly as they do against the hardware.

/// The makes the built-in profiles (`config/modems/*.toml`) are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vendor {
    Generic,
    Quectel,
    Simcom,
    Huawei,
    Sierra,
    Fibocom,
}

/// What `ATI`, `AT+CGMI`, `AT+CGMM`, `AT+CGMR` and `AT+CGSN` report.
pub(crate) struct Identity {
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub revision: &'static str,
    pub imei: &'static str,
    /// The `ATI` information lines, in the vendor's shape (bare lines or `Key: value`).
    pub ati: &'static [&'static str],
}

/// The SIM every simulated modem holds (an ICCID from ModemManager's tests).
const ICCID: &str = "89860117851014783481";

impl Vendor {
    /// The profile name (`generic`, `quectel`, ...) to a make.
    pub(crate) fn from_profile(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "generic" => Self::Generic,
            "quectel" => Self::Quectel,
            "simcom" => Self::Simcom,
            "huawei" => Self::Huawei,
            "sierra" => Self::Sierra,
            "fibocom" => Self::Fibocom,
            _ => return None,
        })
    }

    pub(crate) fn identity(self) -> Identity {
        match self {
            // Matches no vendor profile on purpose, so profile selection falls back to generic.
            Self::Generic => Identity {
                manufacturer: "Edgeward",
                model: "LTE-SIM",
                revision: "SIM 1.0",
                imei: "490154203237518",
                ati: &[
                    "Manufacturer: Edgeward",
                    "Model: LTE-SIM",
                    "Revision: SIM 1.0",
                ],
            },
            Self::Quectel => Identity {
                manufacturer: "Quectel",
                model: "EC25",
                revision: "EC25EFAR06A06M4G",
                imei: "866425030123456",
                ati: &["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"],
            },
            Self::Simcom => Identity {
                manufacturer: "SIMCOM INCORPORATED",
                model: "SIMCOM_SIM7600G-H",
                revision: "LE20B04SIM7600G22",
                imei: "868822040061788",
                ati: &[
                    "Manufacturer: SIMCOM INCORPORATED",
                    "Model: SIMCOM_SIM7600G-H",
                    "Revision: LE20B04SIM7600G22",
                    "QCN:",
                    "IMEI: 868822040061788",
                    "MEID:",
                    "+GCAP: +CGSM",
                    "DeviceInfo: 173,170",
                ],
            },
            Self::Huawei => Identity {
                manufacturer: "huawei",
                model: "ME909s-120",
                revision: "11.617.01.00.00",
                imei: "867223021234567",
                ati: &[
                    "Manufacturer: huawei",
                    "Model: ME909s-120",
                    "Revision: 11.617.01.00.00",
                    "IMEI: 867223021234567",
                    "+GCAP: +CGSM,+DS,+ES",
                ],
            },
            Self::Sierra => Identity {
                manufacturer: "Sierra Wireless, Incorporated",
                model: "EM7455",
                revision: "SWI9X30C_02.24.05.06 r7040 CARMD-EV-FRMWR2 2017/05/19 06:23:09",
                imei: "359073061141290",
                ati: &[
                    "Manufacturer: Sierra Wireless, Incorporated",
                    "Model: EM7455",
                    "Revision: SWI9X30C_02.24.05.06 r7040 CARMD-EV-FRMWR2 2017/05/19 06:23:09",
                    "MEID: 35907306114129",
                    "IMEI: 359073061141290",
                    "IMEI SV: 9",
                    "FSN: LF620543650210",
                    "+GCAP: +CGSM",
                ],
            },
            Self::Fibocom => Identity {
                manufacturer: "Fibocom",
                model: "FM150-AE",
                revision: "89602.1000.00.04.01.14",
                imei: "862146050012345",
                ati: &["Fibocom", "FM150-AE", "Revision: 89602.1000.00.04.01.14"],
            },
        }
    }

    /// Whether the data call has to be redialed after a re-attach (the profiles' `redial`);
    /// the others bring the default bearer up by themselves once registered.
    pub(crate) fn redials(self) -> bool {
        matches!(self, Self::Huawei | Self::Sierra | Self::Fibocom)
    }

    /// Whether `+C5GREG` exists.
    pub(crate) fn has_5g(self) -> bool {
        self == Self::Fibocom
    }

    /// The final result for a command the firmware does not know.
    pub(crate) fn unknown_command(self) -> &'static str {
        match self {
            Self::Huawei => "COMMAND NOT SUPPORT",
            _ => "ERROR",
        }
    }

    /// Lines a freshly booted modem writes on its own, in order.
    pub(crate) fn boot_urcs(self) -> &'static [&'static str] {
        match self {
            Self::Generic => &["+CPIN: READY"],
            Self::Quectel => &[
                "RDY",
                "+CFUN: 1",
                "+CPIN: READY",
                "+QUSIM: 1",
                "+QIND: SMS DONE",
            ],
            Self::Simcom => &["RDY", "+CPIN: READY", "SMS DONE", "PB DONE"],
            Self::Huawei => &["^SYSSTART", "^SIMST: 1"],
            Self::Sierra => &["+CPIN: READY"],
            Self::Fibocom => &["+SIM READY", "+CPIN: READY"],
        }
    }

    /// Background URCs besides the registration reports. All carry a prefix the AT codec knows
    /// as a URC, as the real ones do.
    pub(crate) fn noise(self) -> &'static [&'static str] {
        match self {
            Self::Generic | Self::Sierra => &["RING", "+CIEV: 2,4"],
            Self::Quectel => &["RING", "+QIND: \"csq\",20,99", "+QIND: \"act\",\"LTE\""],
            Self::Simcom => &["RING", "+CIEV: 2,4", "+CGEV: NW MODIFY 1,0"],
            Self::Huawei => &[
                "^RSSI: 20",
                "^HCSQ: \"LTE\",50,45,140,20",
                "^MODE: 17,17",
                "^DSFLOWRPT: 0000003C,00000000,00000000,0000000000001A2B,0000000000003C4D,0003E800,0003E800",
            ],
            Self::Fibocom => &["RING", "+CIEV: 2,4"],
        }
    }

    /// The answer line of the vendor's ICCID command `name` (`read`: `AT<name>?`).
    pub(crate) fn iccid(self, name: &str, read: bool) -> Option<String> {
        use Vendor::*;
        Some(match (self, name, read) {
            (Generic | Fibocom, "+CCID", false) => format!("+CCID: {ICCID}"),
            (Generic | Fibocom, "+ICCID", false) => format!("+ICCID: {ICCID}"),
            (Quectel, "+QCCID", false) => format!("+QCCID: {ICCID}"),
            (Simcom, "+CICCID", false) => format!("+ICCID: {ICCID}"),
            // Huawei reports the card's raw BCD: digits swapped in pairs.
            (Huawei, "^ICCID", true) => format!("^ICCID: \"{}\"", swap_pairs(ICCID)),
            (Sierra, "!ICCID", true) => format!("!ICCID: {ICCID}"),
            (Sierra, "+ICCID", false) => format!("ICCID: {ICCID}"),
            _ => return None,
        })
    }

    /// The vendor's own reset command (after `AT`, upper case), besides 27.007 `+CFUN=1,1`.
    pub(crate) fn reset_command(self) -> Option<&'static str> {
        match self {
            Self::Simcom => Some("+CRESET"),
            Self::Huawei => Some("^RESET"),
            Self::Sierra => Some("!RESET"),
            Self::Generic | Self::Quectel | Self::Fibocom => None,
        }
    }

    /// `AT+CFUN=<n>` values that restart this make (Fibocom 15, Huawei MU736 16).
    pub(crate) fn cfun_resets(self, level: &str) -> bool {
        matches!((self, level), (Self::Fibocom, "15") | (Self::Huawei, "16"))
    }
}

fn swap_pairs(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len());
    let bytes = digits.as_bytes();
    for pair in bytes.chunks(2) {
        for &b in pair.iter().rev() {
            out.push(char::from(b));
        }
    }
    out
}
