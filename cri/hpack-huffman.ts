// The HPACK Huffman code (RFC 7541 Appendix B). The code is canonical, so the
// 257 code lengths define it; the codes are rebuilt from them at load.

// Code length in bits of each octet 0–255, then of EOS (256).
const LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];
const MAX_BITS = 30;
const EOS = 256;

const CODES = new Array<number>(LENGTHS.length);
// Canonical decoding: per length, the first code and where its symbols start in SORTED.
const FIRST_CODE = new Int32Array(MAX_BITS + 2);
const COUNT = new Int32Array(MAX_BITS + 2);
const OFFSET = new Int32Array(MAX_BITS + 2);
const SORTED = [...LENGTHS.keys()].sort((a, b) => LENGTHS[a]! - LENGTHS[b]! || a - b);
{
  let code = 0;
  let bits = LENGTHS[SORTED[0]!]!;
  SORTED.forEach((symbol, i) => {
    const len = LENGTHS[symbol]!;
    if (i > 0) code = (code + 1) * 2 ** (len - bits);
    bits = len;
    CODES[symbol] = code;
    if (COUNT[len] === 0) { FIRST_CODE[len] = code; OFFSET[len] = i; }
    COUNT[len]!++;
  });
}

export class HuffmanError extends Error {}

/** Decodes a Huffman-coded string; throws HuffmanError on an invalid code or padding. */
export function huffmanDecode(src: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil((src.length * 8) / 5));
  let n = 0;
  let code = 0;
  let len = 0;
  for (const byte of src) {
    for (let bit = 7; bit >= 0; bit--) {
      code = code * 2 + ((byte >> bit) & 1);
      len++;
      if (len > MAX_BITS) throw new HuffmanError("Huffman code longer than 30 bits");
      const index = code - FIRST_CODE[len]!;
      if (COUNT[len]! > 0 && index >= 0 && index < COUNT[len]!) {
        const symbol = SORTED[OFFSET[len]! + index]!;
        if (symbol === EOS) throw new HuffmanError("EOS in a Huffman-coded string");
        out[n++] = symbol;
        code = 0;
        len = 0;
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  if (len > 7 || code !== 2 ** len - 1) throw new HuffmanError("bad padding in a Huffman-coded string");
  return out.subarray(0, n);
}

export function huffmanEncodedLength(src: Uint8Array): number {
  let bits = 0;
  for (const byte of src) bits += LENGTHS[byte]!;
  return Math.ceil(bits / 8);
}

export function huffmanEncode(src: Uint8Array): Buffer {
  const out = Buffer.alloc(huffmanEncodedLength(src));
  let n = 0;
  let acc = 0; // pending bits, fewer than 8 between symbols
  let pending = 0;
  for (const byte of src) {
    const len = LENGTHS[byte]!;
    const code = CODES[byte]!;
    // Emit the code from its most significant bit, a byte at a time (codes reach 30 bits: no 32-bit shifts).
    let remaining = len;
    while (remaining > 0) {
      const take = Math.min(8 - pending, remaining);
      const bits = Math.floor(code / 2 ** (remaining - take)) & ((1 << take) - 1);
      acc = (acc << take) | bits;
      pending += take;
      remaining -= take;
      if (pending === 8) { out[n++] = acc; acc = 0; pending = 0; }
    }
  }
  if (pending > 0) out[n++] = (acc << (8 - pending)) | ((1 << (8 - pending)) - 1);
  return out;
}
