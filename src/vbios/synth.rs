//! Synthetic option ROMs built from the published layouts (PCI Firmware
//! 3.0's expansion ROM header and PCI Data Structure, the UEFI PCI option
//! ROM header): a **test double** for exliar's tests, not used by the
//! `exliar` binary. The images hold no code; firmware would not run them.

/// Where the builder puts the PCI Data Structure in each image.
pub const PCIR_AT: usize = 0x40;

/// NVIDIA's vendor id and a GeForce GTX 1080's device id: the builder's
/// default ids.
pub const NV: u16 = 0x10de;
pub const GTX1080: u16 = 0x1b80;

/// One image to build.
#[derive(Debug, Clone)]
pub struct Img {
    /// PCIR code type: 0 legacy x86, 3 UEFI.
    pub code_type: u8,
    pub vendor: u16,
    pub device: u16,
    /// Length in 512-byte units.
    pub units: u16,
    /// Marked as the last image.
    pub last: bool,
    /// PCIR 3.0 device list.
    pub device_list: Vec<u16>,
    /// UEFI images: the PE machine type (`0x8664` x64).
    pub machine: u16,
}

impl Img {
    /// A legacy x86 image of `units` × 512 bytes, checksum fixed.
    pub fn legacy(units: u16) -> Self {
        Self {
            code_type: 0,
            vendor: NV,
            device: GTX1080,
            units,
            last: false,
            device_list: Vec::new(),
            machine: 0,
        }
    }
    /// A UEFI x64 boot-service driver image (a GOP) of `units` × 512 bytes.
    pub fn uefi(units: u16) -> Self {
        Self {
            code_type: 3,
            machine: 0x8664,
            ..Self::legacy(units)
        }
    }
    pub fn last(mut self) -> Self {
        self.last = true;
        self
    }
    pub fn ids(mut self, vendor: u16, device: u16) -> Self {
        self.vendor = vendor;
        self.device = device;
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let len = usize::from(self.units) * 512;
        let mut b = vec![0u8; len.max(0x200)];
        let put16 =
            |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
        b[0] = 0x55;
        b[1] = 0xAA;
        if self.code_type == 3 {
            put16(&mut b, 2, self.units); // initialization size
            b[4..8].copy_from_slice(&0x0EF1u32.to_le_bytes());
            put16(&mut b, 8, 11); // boot-service driver
            put16(&mut b, 0xA, self.machine);
            put16(&mut b, 0xC, 0); // not compressed
            put16(&mut b, 0x16, 0x80); // PE image offset
            b[0x80] = b'M';
            b[0x81] = b'Z';
        } else {
            b[2] = self.units.min(255) as u8; // initialization size
            b[3] = 0xE9; // jmp
        }
        put16(&mut b, 0x18, PCIR_AT as u16);
        let p = PCIR_AT;
        b[p..p + 4].copy_from_slice(b"PCIR");
        put16(&mut b, p + 4, self.vendor);
        put16(&mut b, p + 6, self.device);
        put16(&mut b, p + 0xA, 0x1C); // structure length (3.0)
        b[p + 0xC] = 3; // revision 3
        b[p + 0xD] = 0x00; // programming interface
        b[p + 0xE] = 0x00; // subclass: VGA
        b[p + 0xF] = 0x03; // base class: display
        put16(&mut b, p + 0x10, self.units);
        put16(&mut b, p + 0x12, 1);
        b[p + 0x14] = self.code_type;
        b[p + 0x15] = if self.last { 0x80 } else { 0 };
        if !self.device_list.is_empty() {
            put16(&mut b, p + 8, 0x1C);
            let mut at = p + 0x1C;
            for d in self.device_list.iter().chain(std::iter::once(&0)) {
                put16(&mut b, at, *d);
                at += 2;
            }
        }
        b.truncate(len);
        if self.code_type == 0 && len > 0 {
            // The checksum byte: the last one makes the sum 0.
            let sum = b[..len - 1].iter().fold(0u8, |a, x| a.wrapping_add(*x));
            b[len - 1] = 0u8.wrapping_sub(sum);
        }
        b
    }
}

/// The images one after the other.
pub fn rom(images: &[Img]) -> Vec<u8> {
    images.iter().flat_map(Img::build).collect()
}

/// A GTX 1080-like ROM: a legacy image of 32 KiB and a UEFI (x64 GOP)
/// image of 16 KiB, the last.
pub fn good() -> Vec<u8> {
    rom(&[Img::legacy(64), Img::uefi(32).last()])
}

/// A 0x600-byte header like the one nvflash writes before the first image:
/// not an image, with a stray `0x55 0xAA` inside that has no PCI data
/// structure.
pub fn nvflash_header() -> Vec<u8> {
    let mut h = vec![0u8; 0x600];
    h[..4].copy_from_slice(b"NVGI");
    h[0x100] = 0x55;
    h[0x101] = 0xAA;
    h[0x118] = 0xF0; // PCIR pointer to nothing
    h
}
