//! Bodies in the shape E3372h-320 / E8372h firmware sends them (element order, empty
//! elements, repeated `flymode`, units in the signal values, CRLF-free single lines).

use super::*;

const STATUS_E3372H: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response>
<ConnectionStatus>901</ConnectionStatus>
<WifiConnectionStatus></WifiConnectionStatus>
<SignalStrength></SignalStrength>
<SignalIcon>4</SignalIcon>
<CurrentNetworkType>19</CurrentNetworkType>
<CurrentServiceDomain>3</CurrentServiceDomain>
<RoamingStatus>0</RoamingStatus>
<BatteryStatus></BatteryStatus>
<BatteryLevel></BatteryLevel>
<BatteryPercent></BatteryPercent>
<simlockStatus>0</simlockStatus>
<PrimaryDns>10.177.0.34</PrimaryDns>
<SecondaryDns>10.177.0.210</SecondaryDns>
<wififrequence></wififrequence>
<flymode>0</flymode>
<PrimaryIPv6Dns></PrimaryIPv6Dns>
<SecondaryIPv6Dns></SecondaryIPv6Dns>
<CurrentWifiUser></CurrentWifiUser>
<TotalWifiUser></TotalWifiUser>
<currenttotalwifiuser>0</currenttotalwifiuser>
<ServiceStatus>2</ServiceStatus>
<SimStatus>1</SimStatus>
<WifiStatus></WifiStatus>
<CurrentNetworkTypeEx>101</CurrentNetworkTypeEx>
<maxsignal>5</maxsignal>
<wifiindooronly>0</wifiindooronly>
<classify>hilink</classify>
<flymode>0</flymode>
<cellroam>1</cellroam>
<usbup>0</usbup>
</response>
"#;

const STATUS_E8372H: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response>
<ConnectionStatus>901</ConnectionStatus>
<WifiConnectionStatus></WifiConnectionStatus>
<SignalStrength></SignalStrength>
<SignalIcon>3</SignalIcon>
<CurrentNetworkType>19</CurrentNetworkType>
<CurrentServiceDomain>3</CurrentServiceDomain>
<RoamingStatus>1</RoamingStatus>
<WanIPAddress>10.61.18.203</WanIPAddress>
<WanIPv6Address></WanIPv6Address>
<PrimaryDns>10.177.0.34</PrimaryDns>
<SecondaryDns>10.177.0.210</SecondaryDns>
<CurrentWifiUser>0</CurrentWifiUser>
<TotalWifiUser>16</TotalWifiUser>
<ServiceStatus>2</ServiceStatus>
<SimStatus>1</SimStatus>
<WifiStatus>1</WifiStatus>
<maxsignal>5</maxsignal>
</response>
"#;

const SIGNAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response>
<pci>271</pci>
<sc></sc>
<cell_id>25480450</cell_id>
<rsrq>-11dB</rsrq>
<rsrp>-97dBm</rsrp>
<rssi>&gt;=-51dBm</rssi>
<sinr>7dB</sinr>
<rscp></rscp>
<ecio></ecio>
<mode>7</mode>
<ulbandwidth>20MHz</ulbandwidth>
<dlbandwidth>20MHz</dlbandwidth>
<txpower>PPusch:3dBm PPucch:-9dBm PSrs:0dBm PPrach:-2dBm</txpower>
<tdd></tdd>
<ul_mcs>mcsUpCarrier1:19</ul_mcs>
<dl_mcs>mcsDownCarrier1Code0:16 mcsDownCarrier1Code1:16</dl_mcs>
<earfcn>DL:1300 UL:19300</earfcn>
<band>3</band>
<plmn>45005</plmn>
</response>
"#;

const PLMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response>
<State>0</State>
<FullName>SKTelecom</FullName>
<ShortName>SKT</ShortName>
<Numeric>45005</Numeric>
<Rat>7</Rat>
</response>
"#;

const INFORMATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<response>
<DeviceName>E3372h-320</DeviceName>
<SerialNumber>G4P7S19A04016437</SerialNumber>
<Imei>861821045173925</Imei>
<Imsi>450050123456789</Imsi>
<Iccid>8982050000000123456F</Iccid>
<Msisdn></Msisdn>
<HardwareVersion>CL4E3372HM</HardwareVersion>
<SoftwareVersion>11.0.1.1(H697SP1C983)</SoftwareVersion>
<WebUIVersion>WEBUI 11.0.1.1(W13SP2C7201)</WebUIVersion>
<MacAddress1>0C:5B:8F:27:9A:64</MacAddress1>
<MacAddress2></MacAddress2>
<WanIPAddress>10.61.18.203</WanIPAddress>
<wan_dns_address>10.177.0.34,10.177.0.210</wan_dns_address>
<WanIPv6Address></WanIPv6Address>
<ProductFamily>LTE</ProductFamily>
<Classify>hilink</Classify>
<supportmode>LTE|WCDMA|GSM</supportmode>
<workmode>LTE</workmode>
<submask>255.255.255.255</submask>
</response>
"#;

#[test]
fn status_connected_with_and_without_a_wan_address() {
    let Reply::Response(f) = parse_reply(STATUS_E3372H).unwrap() else {
        panic!("an error")
    };
    let s = MonitoringStatus::from_fields(&f);
    assert!(s.connected());
    assert_eq!(s.wan_ip, None, "E3372h firmware has no WanIPAddress here");
    assert_eq!(s.network_type, Some(19));
    assert_eq!(s.signal_icon, Some(4));
    assert!(!s.roaming);
    assert_eq!(f.get("flymode"), Some("0"));

    let Reply::Response(f) = parse_reply(STATUS_E8372H).unwrap() else {
        panic!("an error")
    };
    let s = MonitoringStatus::from_fields(&f);
    assert_eq!(s.wan_ip, Some("10.61.18.203".parse().unwrap()));
    assert!(s.roaming);
}

#[test]
fn disconnected_and_connecting_are_not_connected() {
    for code in ["900", "902", "903", ""] {
        let body = format!(
            "<response><ConnectionStatus>{code}</ConnectionStatus><WanIPAddress></WanIPAddress></response>"
        );
        let Reply::Response(f) = parse_reply(&body).unwrap() else {
            panic!()
        };
        let s = MonitoringStatus::from_fields(&f);
        assert!(!s.connected(), "{code}");
        assert_eq!(s.wan_ip, None);
    }
}

#[test]
fn signal_values_lose_their_units() {
    let Reply::Response(f) = parse_reply(SIGNAL).unwrap() else {
        panic!()
    };
    let s = Signal::from_fields(&f);
    assert_eq!(s.rsrp_dbm, Some(-97.0));
    assert_eq!(s.rsrq_db, Some(-11.0));
    assert_eq!(s.rssi_dbm, Some(-51.0), "the >= prefix");
    assert_eq!(s.sinr_db, Some(7.0));
    assert_eq!(s.tech.as_deref(), Some("LTE"));
    assert_eq!(measurement("-10.5dB"), Some(-10.5));
    assert_eq!(measurement("<=-113dBm"), Some(-113.0));
    assert_eq!(measurement("dBm"), None);
    assert_eq!(measurement(""), None);
    assert_eq!(measurement("--3"), None);
}

#[test]
fn operator_and_identity() {
    let Reply::Response(f) = parse_reply(PLMN).unwrap() else {
        panic!()
    };
    assert_eq!(operator(&f).as_deref(), Some("SKTelecom"));
    let Reply::Response(f) = parse_reply(
        "<response><FullName></FullName><ShortName></ShortName><Numeric>45005</Numeric></response>",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(operator(&f).as_deref(), Some("45005"));

    let Reply::Response(f) = parse_reply(INFORMATION).unwrap() else {
        panic!()
    };
    let i = Information::from_fields(&f);
    assert_eq!(i.model.as_deref(), Some("E3372h-320"));
    assert_eq!(i.imei.as_deref(), Some("861821045173925"));
    assert_eq!(i.iccid.as_deref(), Some("8982050000000123456F"));
    assert_eq!(i.firmware.as_deref(), Some("11.0.1.1(H697SP1C983)"));
    assert_eq!(i.wan_ip, Some("10.61.18.203".parse().unwrap()));
}

#[test]
fn errors_ok_and_garbage() {
    let err = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n<code>125002</code>\n<message></message>\n</error>\n";
    assert_eq!(
        parse_reply(err).unwrap(),
        Reply::Error {
            code: 125002,
            message: String::new()
        }
    );
    let Reply::Response(f) =
        parse_reply("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>OK</response>\n")
            .unwrap()
    else {
        panic!()
    };
    assert!(f.is_ok());
    for bad in [
        "",
        "<html><body>Redirecting</body></html>",
        "<error><code>x</code></error>",
        "<response>",
        "<!DOCTYPE r [<!ENTITY a \"aaaa\">]><response>&a;</response>",
        "\u{0}\u{1}garbage",
    ] {
        assert!(parse_reply(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn net_mode_flips_between_auto_and_lte_only_keeping_the_bands() {
    let Reply::Response(f) = parse_reply(
        "<response><NetworkMode>00</NetworkMode><NetworkBand>3FFFFFFF</NetworkBand><LTEBand>800C5</LTEBand></response>",
    )
    .unwrap() else {
        panic!()
    };
    let m = NetMode::from_fields(&f).unwrap();
    let lte = m.flipped();
    assert_eq!(lte.mode, MODE_LTE);
    assert_eq!(lte.lte_band, "800C5");
    assert_eq!(lte.flipped().mode, MODE_AUTO);
    assert_eq!(
        lte.request(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><request><NetworkMode>03</NetworkMode><NetworkBand>3FFFFFFF</NetworkBand><LTEBand>800C5</LTEBand></request>"
    );
    // 2G-only and 3G-only sticks flip to auto.
    let g = NetMode {
        mode: "01".into(),
        ..m
    };
    assert_eq!(g.flipped().mode, MODE_AUTO);
}

#[test]
fn requests_escape_their_values() {
    assert_eq!(
        request(&[("Username", "a<b>&\"'")]),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><request><Username>a&lt;b&gt;&amp;&quot;&apos;</Username></request>"
    );
    // What we send parses back to what we meant.
    let body =
        request(&[("Password", "x</Password><Username>root")]).replace("request>", "response>");
    let Reply::Response(f) = parse_reply(&body).unwrap() else {
        panic!()
    };
    assert_eq!(f.get("Password"), Some("x</Password><Username>root"));
    assert_eq!(f.get("Username"), None);
}

#[test]
fn login_state() {
    let Reply::Response(f) = parse_reply(
        "<response><State>-1</State><Username></Username><password_type>4</password_type><extern_password_type>1</extern_password_type><firstlogin>1</firstlogin></response>",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        LoginState::from_fields(&f),
        LoginState {
            logged_in: false,
            password_type: 4
        }
    );
}

#[test]
fn csrf_tokens_from_the_home_page() {
    let html = r#"<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
<meta name="csrf_token" content="r7M0mKqPqZ3Ht2yF1vEvN8dXo3Tj1xWb"/>
<META name='csrf_token' content='Kp2sXyEo0w9ZfN6qRmA4uT5cVbL8hJ3d'>
<meta name="viewport" content="width=device-width" />
<meta name="csrf_token" content="">
<title></title>"#;
    assert_eq!(
        csrf_meta_tokens(html),
        [
            "r7M0mKqPqZ3Ht2yF1vEvN8dXo3Tj1xWb",
            "Kp2sXyEo0w9ZfN6qRmA4uT5cVbL8hJ3d"
        ]
    );
    assert!(csrf_meta_tokens("<html><head><meta name=\"csrf_token\" content").is_empty());
    assert!(csrf_meta_tokens("<meta").is_empty());
    assert!(csrf_meta_tokens("").is_empty());
}

proptest::proptest! {
    #[test]
    fn no_body_panics(body in ".{0,200}") {
        let _ = parse_reply(&body);
        let _ = csrf_meta_tokens(&body);
        let _ = measurement(&body);
    }
}
