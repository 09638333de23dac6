// The decoded form of Mobility Header messages and options (RFC 6275 §6.1–6.2, RFC 3963 §4, RFC 4285,
// RFC 5555 §3). Addresses are IPv6 text in RFC 5952 canonical form ("2001:db8::1"), IPv4 addresses
// dotted-quad text ("192.0.2.1"); the codec converts.

/** A mobility option. Padding is kept as decoded so re-encoding is byte-exact. */
export type MobilityOption =
  | { type: 'pad1' }
  /** PadN: `length` is the option data length (the option occupies length + 2 octets). */
  | { type: 'padN'; length: number }
  /** Binding Refresh Advice (RFC 6275 §6.2.4): refresh interval in units of 4 s. */
  | { type: 'bindingRefreshAdvice'; interval: number }
  /** Mobile Network Prefix (RFC 3963 §4.3). `prefix` is canonical text with host bits as sent. */
  | { type: 'mobileNetworkPrefix'; prefix: string; prefixLength: number }
  /** Mobility Message Authentication (RFC 4285 §5). */
  | { type: 'auth'; subtype: number; spi: number; authenticator: Uint8Array }
  /** Mobility Message Replay Protection (RFC 4285 §6): 64-bit NTP-format timestamp. */
  | { type: 'replayProtection'; timestamp: bigint }
  /**
   * IPv4 Home Address (RFC 5555 §3.1.1), in a BU. `prefixLength` 1..32 (32: one address). With
   * `requestPrefix` (the P flag) it registers an IPv4 mobile network prefix: `homeAddress` is then the
   * prefix (host bits as sent), or 0.0.0.0 to ask the HA for one. 0.0.0.0 without P asks for an address.
   */
  | { type: 'ipv4HomeAddress'; homeAddress: string; prefixLength: number; requestPrefix: boolean }
  /**
   * IPv4 Address Acknowledgement (RFC 5555 §3.2.1), in a BA: `status` (IPv4AckStatus) for the IPv4 home
   * address or prefix in `homeAddress`; `prefixLength` 0..32, the length allocated (0 on failure).
   */
  | { type: 'ipv4AddressAcknowledgement'; status: number; homeAddress: string; prefixLength: number }
  /** Any other option type, kept as bytes and re-encoded unchanged. */
  | { type: 'raw'; code: number; data: Uint8Array };

export type MobilityOptionType = MobilityOption['type'];

/** Binding Update (RFC 6275 §6.1.7, RFC 3963 §4.1). `flags` is the 16-bit field (BuFlag bits). */
export interface BindingUpdate {
  type: 'bindingUpdate';
  sequence: number;
  flags: number;
  /** Units of 4 s. 0 = deregistration. */
  lifetime: number;
  options: MobilityOption[];
}

/** Binding Acknowledgement (RFC 6275 §6.1.8, RFC 3963 §4.2). `flags` is the 8-bit field (BaFlag bits). */
export interface BindingAcknowledgement {
  type: 'bindingAcknowledgement';
  status: number;
  flags: number;
  sequence: number;
  /** Units of 4 s. */
  lifetime: number;
  options: MobilityOption[];
}

/** Binding Error (RFC 6275 §6.1.9). */
export interface BindingError {
  type: 'bindingError';
  status: number;
  homeAddress: string;
  options: MobilityOption[];
}

/** Binding Refresh Request (RFC 6275 §6.1.2). */
export interface BindingRefreshRequest {
  type: 'bindingRefreshRequest';
  options: MobilityOption[];
}

export type MobilityMessage = BindingUpdate | BindingAcknowledgement | BindingError | BindingRefreshRequest;

/**
 * The UDP payload of the signaling profile (docs/architecture.md, signaling): an IPv6 header followed by the Mobility Header.
 * For a BU: src = home address, dst = HA address. For a BA: the reverse.
 */
export interface SignalingPacket {
  src: string;
  dst: string;
  /** IPv6 hop limit of the inner header; 64 when encoding if absent. */
  hopLimit?: number;
  message: MobilityMessage;
}

/** Security association of RFC 4285 (docs/architecture.md, signaling): SPI → {key, algorithm}, bound to one home address. */
export type AuthAlgorithm = 'hmac-sha1' | 'hmac-sha256';
export interface SecurityAssociation {
  spi: number;
  key: Uint8Array;
  algorithm: AuthAlgorithm;
}
