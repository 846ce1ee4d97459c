//! cloud-init NoCloud for seed-003 servers: the three files (pure, every build) and, with the
//! `vm` feature, the password hash and the seed image they travel in.
//!
//! The seed is a small FAT image labelled `CIDATA` (written in Rust with `fatfs`, no
//! `cloud-localds`/`mkfs` needed), attached to its VM alone, read-only, and stored `0600` in
//! `storage_dir` (libvirt hands it to the VM's qemu process; no other guest or HTTP client can
//! read it). `vm_password` never reaches a file: `user-data` carries its SHA-512 crypt hash
//! (`$6$`, 5000 rounds, 16-character random salt; what `mkpasswd -m sha-512` makes and every
//! Linux `passwd`/`chpasswd` understands) as the user's `passwd`.
//!
//! `network-config` is version 2: each NIC matched by its MAC, a static NIC gets `addresses`
//! (`ip/prefix`) and the first NIC with a gateway the default route; a NIC without an address
//! uses DHCP. No DNS servers are written (seed 003 has no field for them).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The FAT volume label cloud-init looks for (it also accepts `cidata`).
pub const LABEL: &str = "CIDATA";
/// The seed image's size: FAT12, room for the three small files and more.
pub const IMAGE_BYTES: usize = 2 * 1024 * 1024;

/// The cloud-init files of a server, before the password is hashed (that happens where the
/// image is written, [`SeedFiles::render`], so the clear password is never put into a file).
#[derive(Clone)]
pub struct SeedFiles {
    pub meta_data: String,
    pub hostname: String,
    /// User name and clear password.
    pub user: Option<(String, String)>,
    pub network_config: String,
}

impl std::fmt::Debug for SeedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedFiles")
            .field("hostname", &self.hostname)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

impl SeedFiles {
    /// The image: `meta-data`, `user-data` (the password as its SHA-512 crypt hash) and
    /// `network-config`.
    #[cfg(feature = "vm")]
    pub fn render(&self) -> Result<Vec<u8>, String> {
        let user = match &self.user {
            None => None,
            Some((name, password)) => Some((name.as_str(), hash_password(password)?)),
        };
        let user_data = user_data(&self.hostname, user.as_ref().map(|(n, h)| (*n, h.as_str())));
        seed_image(&[
            ("meta-data", self.meta_data.as_bytes()),
            ("user-data", user_data.as_bytes()),
            ("network-config", self.network_config.as_bytes()),
        ])
        .map_err(|e| format!("cannot write the seed image: {e}"))
    }
}

/// A NIC as `network-config` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    pub mac: String,
    /// `None`: DHCP.
    pub address: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
}

/// A host name from a server name (`[A-Za-z0-9_-]`, already checked): lower case, `_` → `-`,
/// no leading or trailing `-`, at most 63 bytes.
pub fn hostname(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect();
    let out: String = mapped.trim_matches('-').chars().take(63).collect();
    match out.trim_end_matches('-') {
        // A name of only separators; still a valid host name.
        "" => "server".to_owned(),
        h => h.to_owned(),
    }
}

/// `meta-data`: the instance id (a new one per VM, so cloud-init runs once per VM) and host name.
pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: \"{instance_id}\"\nlocal-hostname: \"{hostname}\"\n")
}

/// `user-data`: the host name and, given, one user with a crypt hash as password (password
/// SSH logins allowed, as Proxmox's `ciuser`/`cipassword` do).
pub fn user_data(hostname: &str, user: Option<(&str, &str)>) -> String {
    let mut x = format!("#cloud-config\nhostname: \"{hostname}\"\nmanage_etc_hosts: true\n");
    if let Some((name, hash)) = user {
        let _ = write!(
            x,
            "users:\n\
             \x20 - name: \"{name}\"\n\
             \x20   lock_passwd: false\n\
             \x20   passwd: \"{hash}\"\n\
             \x20   shell: /bin/bash\n\
             \x20   sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n\
             ssh_pwauth: true\n\
             chpasswd:\n\
             \x20 expire: false\n"
        );
    }
    x
}

/// `network-config` (version 2).
pub fn network_config(nics: &[NicConfig]) -> String {
    let mut x = String::from("version: 2\nethernets:\n");
    let mut routed = false;
    for (i, n) in nics.iter().enumerate() {
        let _ = write!(
            x,
            "\x20 nic{i}:\n\
             \x20   match:\n\
             \x20     macaddress: \"{}\"\n",
            n.mac.to_ascii_lowercase()
        );
        match n.address {
            None => x.push_str("    dhcp4: true\n"),
            Some((ip, prefix)) => {
                let _ = write!(
                    x,
                    "    dhcp4: false\n    addresses:\n      - {ip}/{prefix}\n"
                );
                if let (Some(gw), false) = (n.gateway, routed) {
                    routed = true;
                    let _ = write!(x, "    routes:\n      - to: default\n        via: {gw}\n");
                }
            }
        }
    }
    x
}

/// The SHA-512 crypt (`$6$<salt>$<hash>`) of `password` with a fresh random salt.
#[cfg(feature = "vm")]
pub fn hash_password(password: &str) -> Result<String, String> {
    use rand_core::{OsRng, RngCore};
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 16];
    OsRng.fill_bytes(&mut raw);
    let salt: String = raw
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    hash_with_salt(password, &salt)
}

/// [`hash_password`] with a given salt (tests compare with other implementations).
#[cfg(feature = "vm")]
pub fn hash_with_salt(password: &str, salt: &str) -> Result<String, String> {
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .map_err(|e| format!("sha-crypt parameters: {e:?}"))?;
    let hash = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .map_err(|e| format!("sha-crypt: {e:?}"))?;
    Ok(format!("$6${salt}${hash}"))
}

/// A FAT image labelled [`LABEL`] holding `files` (name, contents) in its root directory.
#[cfg(feature = "vm")]
pub fn seed_image(files: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    use std::io::{Cursor, Write};
    let mut label = [b' '; 11];
    label[..LABEL.len()].copy_from_slice(LABEL.as_bytes());
    let mut disk = Cursor::new(vec![0u8; IMAGE_BYTES]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new().volume_label(label),
    )?;
    disk.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        {
            let root = fs.root_dir();
            for (name, contents) in files {
                let mut f = root.create_file(name)?;
                f.truncate()?;
                f.write_all(contents)?;
                f.flush()?;
            }
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(hostname("web-server-03"), "web-server-03");
        assert_eq!(hostname("DB_Primary"), "db-primary");
        assert_eq!(hostname("__x__"), "x");
        assert_eq!(hostname("---"), "server");
        assert_eq!(hostname(&"a".repeat(64)).len(), 63);
    }

    #[test]
    fn files_say_what_was_asked() {
        let u = user_data("web-1", Some(("rocky", "$6$salt$hash")));
        assert!(u.starts_with("#cloud-config\n"));
        assert!(u.contains("hostname: \"web-1\""));
        assert!(
            u.contains("  - name: \"rocky\"\n    lock_passwd: false\n    passwd: \"$6$salt$hash\"")
        );
        assert!(!user_data("web-1", None).contains("users:"));
        let n = network_config(&[
            NicConfig {
                mac: "52:54:00:AA:00:01".into(),
                address: Some((Ipv4Addr::new(192, 168, 1, 103), 24)),
                gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
            },
            NicConfig {
                mac: "52:54:00:aa:00:02".into(),
                address: Some((Ipv4Addr::new(10, 0, 0, 2), 8)),
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            },
            NicConfig {
                mac: "52:54:00:aa:00:03".into(),
                address: None,
                gateway: None,
            },
        ]);
        assert_eq!(
            n,
            "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"52:54:00:aa:00:01\"\n    dhcp4: false\n    addresses:\n      - 192.168.1.103/24\n    routes:\n      - to: default\n        via: 192.168.1.1\n  nic1:\n    match:\n      macaddress: \"52:54:00:aa:00:02\"\n    dhcp4: false\n    addresses:\n      - 10.0.0.2/8\n  nic2:\n    match:\n      macaddress: \"52:54:00:aa:00:03\"\n    dhcp4: true\n"
        );
        assert_eq!(
            meta_data("i-1", "web-1"),
            "instance-id: \"i-1\"\nlocal-hostname: \"web-1\"\n"
        );
    }

    #[cfg(feature = "vm")]
    #[test]
    fn sha512_crypt_matches_the_reference() {
        // Drepper's SHA-crypt specification, test vector 1 (5000 rounds, the default).
        assert_eq!(
            hash_with_salt("Hello world!", "saltstring").unwrap(),
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        let h = hash_password("password123").unwrap();
        assert!(h.starts_with("$6$") && h.len() == 3 + 16 + 1 + 86, "{h}");
        assert_ne!(
            h,
            hash_password("password123").unwrap(),
            "a fresh salt each time"
        );
        // openssl computes the same hash for the same salt (an independent implementation).
        let salt = &h[3..19];
        let out = std::process::Command::new("openssl")
            .args(["passwd", "-6", "-salt", salt, "password123"])
            .output()
            .expect("openssl");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), h);
    }

    #[cfg(feature = "vm")]
    #[test]
    fn the_seed_image_is_a_cidata_fat_volume() {
        let img = seed_image(&[
            ("meta-data", b"instance-id: x\n"),
            ("user-data", b"#cloud-config\n"),
            ("network-config", b"version: 2\n"),
        ])
        .unwrap();
        assert_eq!(img.len(), IMAGE_BYTES);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.img");
        std::fs::write(&path, &img).unwrap();
        // Independent readers: blkid for the label and type, mtools for the files.
        let blkid = std::process::Command::new("blkid")
            .args(["-o", "export"])
            .arg(&path)
            .output()
            .expect("blkid (util-linux)");
        let b = String::from_utf8_lossy(&blkid.stdout);
        assert!(b.contains("LABEL=CIDATA") && b.contains("TYPE=vfat"), "{b}");
        let mtype = std::process::Command::new("mtype")
            .arg("-i")
            .arg(&path)
            .arg("::network-config")
            .output()
            .expect("mtype (mtools)");
        assert_eq!(String::from_utf8_lossy(&mtype.stdout), "version: 2\n");
        let fsck = std::process::Command::new("fsck.vfat")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("fsck.vfat (dosfstools)");
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
}
