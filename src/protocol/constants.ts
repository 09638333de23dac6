// Wire constants with their IANA values (RFC 6275 §6.1, RFC 3963 §4, RFC 4285 §5–6). docs/architecture.md, signaling.

/** IPv6 next-header value of the Mobility Header (RFC 6275 §6.1). */
export const IPPROTO_MH = 135;
/** "No next header": the only legal MH payload proto (RFC 6275 §6.1.1). */
export const IPPROTO_NONE = 59;
/** UDP port of the signaling profile (docs/architecture.md, signaling, the RFC 5555 port). */
export const SIGNALING_PORT = 4191;
/** Lifetime fields count units of 4 seconds (RFC 6275 §6.1.7). */
export const LIFETIME_UNIT_SECONDS = 4;

/** Mobility Header types (RFC 6275 §6.1.2–6.1.9). */
export const MhType = {
  BindingRefreshRequest: 0,
  BindingUpdate: 5,
  BindingAcknowledgement: 6,
  BindingError: 7,
} as const;
export type MhTypeValue = (typeof MhType)[keyof typeof MhType];

/** Binding Update flags in the 16-bit flags field (RFC 6275 §6.1.7, RFC 3963 §4.1, RFC 4285). */
export const BuFlag = {
  A: 0x8000, // acknowledge
  H: 0x4000, // home registration
  L: 0x2000, // link-local address compatibility
  K: 0x1000, // key management mobility capability
  M: 0x0800, // MAP registration (RFC 5380)
  R: 0x0400, // mobile router (RFC 3963 §4.1)
} as const;

/** Binding Acknowledgement flags in the 8-bit flags field (RFC 6275 §6.1.8, RFC 3963 §4.2). */
export const BaFlag = {
  K: 0x80,
  R: 0x40,
} as const;

/** Mobility option types (RFC 6275 §6.2, RFC 3963 §4.3, RFC 4285 §5–6, RFC 5555 §3.1.1, §3.2.1). */
export const OptionType = {
  Pad1: 0,
  PadN: 1,
  BindingRefreshAdvice: 2,
  MobileNetworkPrefix: 6,
  MobilityMessageAuthentication: 9,
  MobilityMessageReplayProtection: 10,
  IPv4HomeAddress: 29,
  IPv4AddressAcknowledgement: 30,
} as const;

/** Subtype of the Mobility Message Authentication option (RFC 4285 §5). */
export const AuthSubtype = {
  MnHa: 1,
  MnAaa: 2,
} as const;

/** Binding Acknowledgement status codes (RFC 6275 §6.1.8, RFC 3963 §4.2, RFC 4285 §8). */
export const BaStatus = {
  ACCEPTED: 0,
  UNSPECIFIED: 128,
  ADMINISTRATIVELY_PROHIBITED: 129,
  INSUFFICIENT_RESOURCES: 130,
  HOME_REGISTRATION_NOT_SUPPORTED: 131,
  NOT_HOME_SUBNET: 132,
  NOT_HOME_AGENT_FOR_THIS_MN: 133,
  SEQUENCE_NUMBER_OUT_OF_WINDOW: 135,
  REGISTRATION_TYPE_CHANGE_DISALLOWED: 139,
  MOBILE_ROUTER_OPERATION_NOT_PERMITTED: 140,
  INVALID_PREFIX: 141,
  NOT_AUTHORIZED_FOR_PREFIX: 142,
  FORWARDING_SETUP_FAILED: 143,
  MIPV6_ID_MISMATCH: 144,
  MIPV6_MESG_ID_REQD: 145,
  MIPV6_AUTH_FAIL: 146,
} as const;
export type BaStatusValue = (typeof BaStatus)[keyof typeof BaStatus];

/**
 * Status of the IPv4 Address Acknowledgement option (RFC 5555 §3.2.1): below 128 the IPv4 home address
 * or prefix is bound, from 128 it is refused. Separate from the BA status, which answers the IPv6 binding.
 */
export const IPv4AckStatus = {
  SUCCESS: 0,
  UNSPECIFIED: 128,
  ADMINISTRATIVELY_PROHIBITED: 129,
  INCORRECT_IPV4_HOME_ADDRESS: 130,
  INVALID_IPV4_ADDRESS: 131,
  DYNAMIC_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_AVAILABLE: 132,
  PREFIX_ALLOCATION_UNAUTHORIZED: 133,
} as const;
export type IPv4AckStatusValue = (typeof IPv4AckStatus)[keyof typeof IPv4AckStatus];

/** Binding Error status codes (RFC 6275 §6.1.9). */
export const BeStatus = {
  UNKNOWN_HOME_ADDRESS_OPTION: 1,
  UNRECOGNIZED_MH_TYPE: 2,
} as const;

/** Name of a BA status value, for logs, metrics and error messages (`142` → `NOT_AUTHORIZED_FOR_PREFIX`). */
export function baStatusName(status: number): string {
  for (const [name, value] of Object.entries(BaStatus)) if (value === status) return name;
  return status < 128 ? `ACCEPTED_${status}` : `UNKNOWN_${status}`;
}
