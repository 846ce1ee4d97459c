use super::*;
use proptest::prelude::*;

fn drain(codec: &mut AtCodec) -> Vec<AtEvent> {
    std::iter::from_fn(|| codec.poll_event()).collect()
}

/// Starts `cmd` (if any), feeds the whole transcript, returns the events.
fn run(cmd: Option<&str>, bytes: &[u8]) -> Vec<AtEvent> {
    let mut codec = AtCodec::new();
    if let Some(cmd) = cmd {
        codec.start_command(cmd);
    }
    codec.feed(bytes);
    drain(&mut codec)
}

fn info(s: &str) -> AtEvent {
    AtEvent::Info(s.to_string())
}

fn urc(s: &str) -> AtEvent {
    AtEvent::Urc(s.to_string())
}

const OK: AtEvent = AtEvent::Final(FinalResult::Ok);

#[test]
fn start_command_normalises() {
    let mut codec = AtCodec::new();
    assert_eq!(codec.start_command("AT+CSQ"), b"AT+CSQ\r");
    assert_eq!(codec.start_command("+CSQ"), b"AT+CSQ\r");
    assert_eq!(codec.start_command(" at+cops?\r\n"), b"at+cops?\r");
    // A line break inside the text cannot smuggle in a second command.
    assert_eq!(
        codec.start_command("AT+CFUN=1\rAT+CFUN=0"),
        b"AT+CFUN=1AT+CFUN=0\r"
    );
    assert_eq!(codec.in_flight(), Some("AT+CFUN=1AT+CFUN=0"));
    codec.cancel_command();
    assert_eq!(codec.in_flight(), None);
}

/// Real transcripts. Sources are named per case; where a case is a fragment of a longer capture
/// the interesting part is kept verbatim.
#[test]
fn transcripts() {
    struct Case {
        what: &'static str,
        cmd: Option<&'static str>,
        bytes: &'static [u8],
        events: Vec<AtEvent>,
    }
    let cases = vec![
        Case {
            what: "Quectel EC25 ATI, echo on (ATI output as in Quectel EC25 test fixtures)",
            cmd: Some("ATI"),
            bytes: b"ATI\r\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n",
            events: vec![
                info("Quectel"),
                info("EC25"),
                info("Revision: EC25EFAR06A06M4G"),
                OK,
            ],
        },
        Case {
            what: "Telit GE865 AT+CGPADDR=1 with echo (ge865 python module doctest)",
            cmd: Some("AT+CGPADDR=1"),
            bytes: b"AT+CGPADDR=1\r\r\n+CGPADDR: 1,\"10.215.15.91\"\r\n\r\nOK\r\n",
            events: vec![info("+CGPADDR: 1,\"10.215.15.91\""), OK],
        },
        Case {
            what: "SIMCom SIM7600C ATI with CR-only line ends (pytest fixture of a SIM7600 driver)",
            cmd: Some("ATI"),
            bytes: b"\r\nManufacturer: SIMCOM INCORPORATED\rModel: SIMCOM_SIM7600C\rRevision: SIM7600C _V1.0\rIMEI: 351602000330570\r+GCAP: +CGSM,+FCLASS,+DS\rOK\r\n",
            events: vec![
                info("Manufacturer: SIMCOM INCORPORATED"),
                info("Model: SIMCOM_SIM7600C"),
                info("Revision: SIM7600C _V1.0"),
                info("IMEI: 351602000330570"),
                info("+GCAP: +CGSM,+FCLASS,+DS"),
                OK,
            ],
        },
        Case {
            what: "SIMCom SIM7600A-H ATI followed by boot URCs (observed replies in a SIM7600 test)",
            cmd: Some("ATI"),
            bytes: b"Manufacturer: SIMCOM INCORPORATED\r\nModel: SIMCOM_SIM7600A-H\r\nRevision: SIM7600A-H_V1.1\r\nSVN: 03\r\nIMEI: 868022030638220\r\n+GCAP: +CGSM\r\n\r\nOK\r\n\r\n+CPIN: READY\r\n\r\nSMS DONE\r\n",
            events: vec![
                info("Manufacturer: SIMCOM INCORPORATED"),
                info("Model: SIMCOM_SIM7600A-H"),
                info("Revision: SIM7600A-H_V1.1"),
                info("SVN: 03"),
                info("IMEI: 868022030638220"),
                info("+GCAP: +CGSM"),
                OK,
                urc("+CPIN: READY"),
                urc("SMS DONE"),
            ],
        },
        Case {
            what: "CME error as text (AT+CMEE=2), SIM7600 without SIM",
            cmd: Some("AT+CPIN?"),
            bytes: b"\r\n+CME ERROR: SIM not inserted\r\n",
            events: vec![AtEvent::Final(FinalResult::CmeError(ErrorCode::Text(
                "SIM not inserted".into(),
            )))],
        },
        Case {
            what: "CME error as number (AT+CMEE=1)",
            cmd: Some("AT+CPIN?"),
            bytes: b"\r\n+CME ERROR: 10\r\n",
            events: vec![AtEvent::Final(FinalResult::CmeError(ErrorCode::Numeric(10)))],
        },
        Case {
            what: "CMS error and Huawei's COMMAND NOT SUPPORT",
            cmd: Some("AT+CMGS=5"),
            bytes: b"\r\n+CMS ERROR: 500\r\n",
            events: vec![AtEvent::Final(FinalResult::CmsError(ErrorCode::Numeric(500)))],
        },
        Case {
            what: "Huawei: unknown command",
            cmd: Some("AT^FOO"),
            bytes: b"\r\nCOMMAND NOT SUPPORT\r\n",
            events: vec![AtEvent::Final(FinalResult::CommandNotSupport)],
        },
        Case {
            what: "Huawei ^MODE URC with its CR CR LF ending inside ^SYSINFOEX (MM huawei regexes; MM huawei tests)",
            cmd: Some("AT^SYSINFOEX"),
            bytes: b"\r\n^MODE: 2\r\r\n\r\n^SYSINFOEX:2,4,5,1,,3,\"WCDMA\",41,\"HSPA+\"\r\n\r\n^RSSI:17\r\n\r\nOK\r\n",
            events: vec![
                urc("^MODE: 2"),
                info("^SYSINFOEX:2,4,5,1,,3,\"WCDMA\",41,\"HSPA+\""),
                urc("^RSSI:17"),
                OK,
            ],
        },
        Case {
            what: "+CEREG read answer is solicited; a CEREG URC in the middle is not",
            cmd: Some("AT+CEREG?"),
            bytes: b"\r\n+CEREG: 1\r\n\r\n+CEREG: 2,1,\"1A2B\",\"01A2B3C4\",7\r\n\r\nOK\r\n",
            events: vec![urc("+CEREG: 1"), info("+CEREG: 2,1,\"1A2B\",\"01A2B3C4\",7"), OK],
        },
        Case {
            what: "+CEREG URC with location during another command",
            cmd: Some("AT+CGPADDR=1"),
            bytes: b"\r\n+CGPADDR: 1,\"10.1.2.3\"\r\n\r\n+CEREG: 1,\"1A2B\",\"01A2B3C4\",7\r\n\r\nOK\r\n",
            events: vec![
                info("+CGPADDR: 1,\"10.1.2.3\""),
                urc("+CEREG: 1,\"1A2B\",\"01A2B3C4\",7"),
                OK,
            ],
        },
        Case {
            what: "+CEREG: 0,1 answer to AT+CEREG? (n=0, registered home)",
            cmd: Some("AT+CEREG?"),
            bytes: b"AT+CEREG?\r\r\n+CEREG: 0,1\r\n\r\nOK\r\n",
            events: vec![info("+CEREG: 0,1"), OK],
        },
        Case {
            what: "Quectel after AT+CFUN=1: SIM URCs after OK; +CPIN during a set command is a URC",
            cmd: Some("AT+CFUN=1"),
            bytes: b"\r\n+CPIN: READY\r\n\r\nOK\r\n\r\n+QUSIM: 1\r\n\r\n+QIND: SMS DONE\r\n\r\n+QIND: PB DONE\r\n",
            events: vec![
                urc("+CPIN: READY"),
                OK,
                urc("+QUSIM: 1"),
                urc("+QIND: SMS DONE"),
                urc("+QIND: PB DONE"),
            ],
        },
        Case {
            what: "+CPIN answer to AT+CPIN? is solicited",
            cmd: Some("AT+CPIN?"),
            bytes: b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
            events: vec![info("+CPIN: READY"), OK],
        },
        Case {
            what: "Quectel boot after AT+CFUN=1,1: idle URCs",
            cmd: None,
            bytes: b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n",
            events: vec![urc("RDY"), urc("+CFUN: 1"), urc("+CPIN: READY"), urc("+QUSIM: 1")],
        },
        Case {
            what: "echo without its CR, LF-only line ends",
            cmd: Some("AT+CSQ"),
            bytes: b"AT+CSQ\n+CSQ: 20,99\n\nOK\n",
            events: vec![info("+CSQ: 20,99"), OK],
        },
        Case {
            what: "SMS prompt has no line ending",
            cmd: Some("AT+CMGS=\"+15551234567\""),
            bytes: b"AT+CMGS=\"+15551234567\"\r\r\n> ",
            events: vec![AtEvent::Prompt],
        },
        Case {
            what: "OK with nothing in flight is a stray; NO CARRIER and +CGEV are URCs",
            cmd: None,
            bytes: b"\r\nOK\r\n\r\nNO CARRIER\r\n\r\n+CGEV: NW DETACH\r\n",
            events: vec![
                AtEvent::Stray(FinalResult::Ok),
                urc("NO CARRIER"),
                urc("+CGEV: NW DETACH"),
            ],
        },
        Case {
            what: "unknown vendor URC mid-response is kept as an information line",
            cmd: Some("AT+COPS?"),
            bytes: b"\r\n+XYZ: 1\r\n+COPS: 0,0,\"Telekom.de\",9\r\nOK\r\n",
            events: vec![info("+XYZ: 1"), info("+COPS: 0,0,\"Telekom.de\",9"), OK],
        },
        Case {
            what: "ERROR ends the command",
            cmd: Some("AT+QIACT=1"),
            bytes: b"\r\nERROR\r\n",
            events: vec![AtEvent::Final(FinalResult::Error)],
        },
    ];
    for case in cases {
        assert_eq!(run(case.cmd, case.bytes), case.events, "{}", case.what);
    }
}

#[test]
fn invalid_utf8_is_replaced() {
    let events = run(Some("AT+COPS?"), b"+COPS: 0,0,\"\xff\xfeOp\"\r\nOK\r\n");
    assert_eq!(events, vec![info("+COPS: 0,0,\"\u{fffd}\u{fffd}Op\""), OK]);
}

#[test]
fn overlong_line_is_cut_once_and_memory_stays_bounded() {
    let mut codec = AtCodec::new();
    codec.start_command("AT+COPS=?");
    let long = vec![b'x'; MAX_LINE * 3];
    codec.feed(&long);
    assert!(codec.buffered_len() <= MAX_LINE);
    codec.feed(b"\r\nOK\r\n");
    let events = drain(&mut codec);
    assert_eq!(events.len(), 2);
    assert!(matches!(&events[0], AtEvent::Garbage(s) if s.len() == MAX_LINE));
    assert_eq!(events[1], OK);
}

#[test]
fn late_answer_after_cancel_is_stray() {
    let mut codec = AtCodec::new();
    codec.start_command("AT+CFUN=4");
    codec.feed(b"AT+CFUN=4\r");
    codec.cancel_command();
    codec.feed(b"\r\nOK\r\n");
    assert_eq!(drain(&mut codec), vec![AtEvent::Stray(FinalResult::Ok)]);
}

#[test]
fn event_queue_is_bounded_and_reports_drops() {
    let mut codec = AtCodec::new();
    let input = b"RING\r".repeat(MAX_QUEUED_EVENTS + 10);
    codec.feed(&input);
    let events = drain(&mut codec);
    assert_eq!(events.len(), MAX_QUEUED_EVENTS + 1);
    assert_eq!(events.last(), Some(&AtEvent::Dropped(10)));
}

#[test]
fn reset_forgets_everything() {
    let mut codec = AtCodec::new();
    codec.start_command("AT");
    codec.feed(b"half a li");
    codec.reset();
    assert_eq!(codec.in_flight(), None);
    assert_eq!(codec.buffered_len(), 0);
    codec.feed(b"ne\r\n");
    assert_eq!(drain(&mut codec), vec![urc("ne")]);
}

/// Feeds `bytes` split at `cuts` (positions, any order, out-of-range ones ignored).
fn run_split(cmd: &str, bytes: &[u8], cuts: &[usize]) -> Vec<AtEvent> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    let mut codec = AtCodec::new();
    codec.start_command(cmd);
    let mut events = Vec::new();
    for pair in points.windows(2) {
        codec.feed(&bytes[pair[0]..pair[1]]);
        events.extend(drain(&mut codec));
    }
    events
}

const URCS: &[&str] = &[
    "+CEREG: 1,\"1A2B\",\"01A2B3C4\",7",
    "+CEREG: 2",
    "+CGREG: 5,\"0502\",\"0404736D\",2",
    "RING",
    "^RSSI:17",
    "^MODE:5",
    "^SYSSTART",
    "+QIND: SMS DONE",
    "+QSTK: 37",
    "RDY",
    "+CPIN: READY",
    "+CFUN: 1",
    "^BOOT:12345,0,0,0,6",
    "+PACSP1",
    "+SIM READY",
    "POWERED DOWN",
    "+CGEV: ME PDN ACT 1",
];

fn line_end() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["\r\n", "\n", "\r", "\r\r\n", "\r\n\r\n"])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) No input makes the codec panic, and its buffers stay bounded.
    #[test]
    fn any_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..(MAX_LINE * 3)),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        cmd in prop::option::of("[A-Z+^=?,0-9]{0,12}"),
    ) {
        let mut codec = AtCodec::new();
        if let Some(cmd) = &cmd {
            codec.start_command(cmd);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        for pair in points.windows(2) {
            codec.feed(&bytes[pair[0]..pair[1]]);
            prop_assert!(codec.buffered_len() <= MAX_LINE);
            while let Some(event) = codec.poll_event() {
                if let AtEvent::Info(s) | AtEvent::Urc(s) | AtEvent::Garbage(s) = event {
                    // Lossy decoding can at most triple the bytes of a kept line.
                    prop_assert!(s.len() <= MAX_LINE * 3);
                }
            }
        }
    }

    /// (b) Where the reads split the stream does not change the events.
    #[test]
    fn splitting_does_not_change_events(
        lines in prop::collection::vec("[ -~]{0,40}", 0..20),
        ends in prop::collection::vec(line_end(), 20),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let mut bytes = Vec::new();
        for (line, end) in lines.iter().zip(ends.iter()) {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(end.as_bytes());
        }
        bytes.extend_from_slice(&garbage);
        bytes.extend_from_slice(b"\r\nOK\r\n");
        let whole = run_split("AT+CGPADDR=1", &bytes, &[]);
        let split = run_split("AT+CGPADDR=1", &bytes, &cuts);
        prop_assert_eq!(whole, split);
    }

    /// (c) URCs between the lines of a response come out as URCs and leave the response intact.
    #[test]
    fn urcs_between_lines_do_not_disturb_the_response(
        n_info in 0usize..5,
        inserts in prop::collection::vec((0usize..8, prop::sample::select(URCS.to_vec())), 0..6),
        echo in any::<bool>(),
        end in line_end(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let cmd = "AT+CGPADDR";
        let info_lines: Vec<String> =
            (0..n_info).map(|i| format!("+CGPADDR: {},\"10.0.0.{}\"", i + 1, i + 1)).collect();
        // Slots: 0 before the echo/first line, then after each line of the response.
        let mut response: Vec<String> = Vec::new();
        if echo {
            response.push(cmd.to_string());
        }
        response.extend(info_lines.iter().cloned());
        let mut stream: Vec<String> = Vec::new();
        let mut expected_urcs: Vec<String> = Vec::new();
        for slot in 0..=response.len() {
            for (_, u) in inserts.iter().filter(|(at, _)| at % (response.len() + 1) == slot) {
                stream.push((*u).to_string());
                expected_urcs.push((*u).to_string());
            }
            if let Some(line) = response.get(slot) {
                stream.push(line.clone());
            }
        }
        stream.push("OK".to_string());
        let mut bytes = Vec::new();
        for line in &stream {
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(end.as_bytes());
        }
        let events = run_split(cmd, &bytes, &cuts);
        let infos: Vec<String> = events.iter().filter_map(|e| match e {
            AtEvent::Info(s) => Some(s.clone()),
            _ => None,
        }).collect();
        let urcs: Vec<String> = events.iter().filter_map(|e| match e {
            AtEvent::Urc(s) => Some(s.clone()),
            _ => None,
        }).collect();
        prop_assert_eq!(infos, info_lines);
        prop_assert_eq!(urcs, expected_urcs);
        prop_assert_eq!(events.last(), Some(&OK));
    }
}

/// The codec's information lines are exactly what the parsers take.
#[test]
fn info_lines_feed_the_parsers() {
    use super::super::parse::{self, Parsed, ParserKind, RegStat};
    let mut codec = AtCodec::new();
    codec.start_command("AT+CEREG?");
    codec.feed(b"AT+CEREG?\r\r\n+CEREG: 2,5,\"1A2B\",\"01A2B3C4\",7\r\n\r\n^RSSI:17\r\n\r\nOK\r\n");
    let mut info_lines = Vec::new();
    let mut urcs = Vec::new();
    while let Some(event) = codec.poll_event() {
        match event {
            AtEvent::Info(line) => info_lines.push(line),
            AtEvent::Urc(line) => urcs.push(line),
            AtEvent::Final(result) => assert!(result.is_ok()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(urcs, ["^RSSI:17"]);
    match parse::parse(ParserKind::Registration, &info_lines).unwrap() {
        Parsed::Registration(r) => {
            assert_eq!(
                (r.stat, r.area, r.act),
                (RegStat::Roaming, Some(0x1a2b), Some(7))
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}
