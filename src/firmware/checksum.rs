//! The MXCHIP FogCloud additive checksum: the sum of every byte of the file as a u32 that wraps
//! on overflow, written as its 4 bytes little-endian in 8 lowercase hex digits
//! (bytes `01 02 03` -> `"06000000"`). Pure arithmetic; never touches files.

/// Bytes summed into one u32 lane before it is folded into the u64 total. 255 * 64 KiB stays far
/// below u32::MAX, so the inner sum cannot overflow and the compiler can vectorise it freely.
const BLOCK: usize = 64 * 1024;

/// Running FogCloud checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FogChecksum {
    // A u64 wrapping sum keeps the low 32 bits exact (2^32 divides 2^64), so it equals the
    // wrapping u32 sum whatever the length.
    total: u64,
}

impl FogChecksum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every byte of `data`.
    pub fn update(&mut self, data: &[u8]) {
        for block in data.chunks(BLOCK) {
            let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
            self.total = self.total.wrapping_add(u64::from(sum));
        }
    }

    /// The wrapping u32 sum.
    pub fn value(&self) -> u32 {
        // Truncation is the definition of the checksum (wrapping u32 sum).
        self.total as u32
    }

    /// The checksum as FogCloud writes it: little-endian bytes as 8 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        checksum_hex(self.value())
    }
}

/// Formats a wrapping byte sum as FogCloud's 8-hex-digit little-endian text.
pub fn checksum_hex(sum: u32) -> String {
    hex::encode(sum.to_le_bytes())
}

/// FogCloud checksum of a whole buffer.
pub fn fog_checksum(data: &[u8]) -> String {
    let mut c = FogChecksum::new();
    c.update(data);
    c.to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &[u8]) -> u32 {
        data.iter()
            .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)))
    }

    #[test]
    fn example_from_the_notes() {
        assert_eq!(fog_checksum(&[1, 2, 3]), "06000000");
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(fog_checksum(&[]), "00000000");
    }

    #[test]
    fn little_endian_byte_order() {
        // 0x1ff = 511 -> bytes ff 01 00 00
        assert_eq!(fog_checksum(&[0xff, 0xff, 0x01]), "ff010000");
    }

    #[test]
    fn wraps_at_u32() {
        // 16_843_010 bytes of 0xff sum to 4_294_967_550 = 2^32 + 254.
        let data = vec![0xffu8; 16_843_010];
        let mut c = FogChecksum::new();
        c.update(&data);
        assert_eq!(c.value(), 254);
        assert_eq!(c.value(), naive(&data));
        assert_eq!(c.to_hex(), "fe000000");
    }

    #[test]
    fn split_updates_equal_one_update() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut split = FogChecksum::new();
        for part in data.chunks(7_777) {
            split.update(part);
        }
        assert_eq!(split.value(), naive(&data));
        assert_eq!(fog_checksum(&data), checksum_hex(naive(&data)));
    }
}
