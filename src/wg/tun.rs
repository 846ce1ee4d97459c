//! The TUN device the data plane reads and writes IP packets through.
//!
//! One device for every exit: each exit's server address (the first host of its subnet) is
//! added to it, so the kernel routes each client subnet to the device by itself.

use std::io;
use std::net::Ipv4Addr;

/// WireGuard's usual inner MTU (1500 minus 80 bytes of IPv6+UDP+WireGuard overhead).
pub const MTU: u16 = 1420;

pub struct Tun {
    device: tun_rs::AsyncDevice,
    name: String,
}

impl Tun {
    /// Creates (or takes over) the device `name`, up, with `addresses` as `address/prefix`.
    pub fn create(name: &str, addresses: &[(Ipv4Addr, u8)]) -> io::Result<Self> {
        let device = tun_rs::DeviceBuilder::new()
            .name(name)
            .mtu(MTU)
            .build_async()?;
        for (addr, prefix) in addresses {
            device.add_address_v4(*addr, *prefix)?;
        }
        device.enabled(true)?;
        Ok(Self {
            device,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.recv(buf).await
    }

    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        self.device.send(packet).await
    }

    /// A read that never waits (`WouldBlock` when nothing is queued).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.device.try_recv(buf)
    }

    /// A write that never waits (`WouldBlock` when the device queue is full).
    pub fn try_send(&self, packet: &[u8]) -> io::Result<usize> {
        self.device.try_send(packet)
    }
}
