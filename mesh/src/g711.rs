//! G.711 mu-law, the audio of Twilio Media Streams (8 kHz, one byte per sample): the one codec
//! of the mesh. media-svc decodes frames to measure their energy and encodes synthesised speech,
//! the gateway's call simulator encodes its caller's voice, and the CLI decodes recordings; they
//! had a copy each.
//!
//! The classic ITU-T G.711 formulation with the 0x84 bias and clipping at 32635. Decoding is
//! exact; `linear_to_ulaw(ulaw_to_linear(b)) == b` for every byte except 0x7F (negative zero,
//! which decodes to 0 and encodes back as 0xFF).

/// Decodes one mu-law byte to 16-bit linear PCM.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let sign = u & 0x80;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let magnitude = ((i32::from(mantissa) << 3) + 0x84) << exponent;
    let sample = magnitude - 0x84;
    // At most 0x7F7B (32635 + the bias rounding), so the cast cannot wrap.
    (if sign != 0 { -sample } else { sample }) as i16
}

/// Encodes one 16-bit linear sample as mu-law (magnitudes above 32635 clip).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mulaw_round_trips_closely() {
        for s in [-30000i16, -1000, -10, 0, 10, 1000, 30000] {
            let back = ulaw_to_linear(linear_to_ulaw(s));
            assert!(
                (i32::from(back) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 8,
                "{s} -> {back}"
            );
        }
        assert_eq!(ulaw_to_linear(0xFF), 0);
    }

    #[test]
    fn encoding_matches_g711_reference_points() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7F);
        assert_eq!(linear_to_ulaw(32767), 0x80);
        assert_eq!(linear_to_ulaw(-32768), 0x00);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
    }

    #[test]
    fn every_code_decodes_and_encodes_back() {
        for byte in 0..=u8::MAX {
            let expected = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(
                linear_to_ulaw(ulaw_to_linear(byte)),
                expected,
                "{byte:#04x}"
            );
        }
    }

    proptest! {
        #[test]
        fn encoding_is_monotonic_and_sign_symmetric(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(ulaw_to_linear(linear_to_ulaw(lo)) <= ulaw_to_linear(linear_to_ulaw(hi)));
            if a > i16::MIN {
                prop_assert_eq!(
                    ulaw_to_linear(linear_to_ulaw(-a)),
                    -ulaw_to_linear(linear_to_ulaw(a))
                );
            }
        }
    }
}
