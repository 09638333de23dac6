// SPDX-License-Identifier: GPL-2.0
/*
 * offlink's eBPF data plane: the RFC 2473 IPv6-in-IPv6 (and IPv4-in-IPv6) tunnel between a NEMO Basic
 * Support home agent and its mobile routers (RFC 3963), for kernels without seg6 lightweight tunnels or
 * ip6_tunnel. Built by scripts/build (clang -target bpf, no CO-RE: kernel BTF is not needed); loaded by
 * iproute2 (`ip route ... encap bpf`, `tc filter ... bpf da`), whose loader pins the maps by name under
 * the daemon's own bpffs; the daemon then changes only map entries, through bpf(2).
 *
 * Programs
 *   lwt_xmit  encapsulation, on routes `encap bpf xmit ... headroom 40`. The outer header comes from
 *             ofl_encap_src (keyed by the inner source: a mobile router's networks, each to its home agent)
 *             or else ofl_encap_dst (keyed by the inner destination: a home agent's bindings). No entry:
 *             dropped and counted (no binding, no tunnel).
 *   tc        decapsulation, tc clsact ingress on the uplink. Only tunnel packets (next header 41 or 4)
 *             addressed to one of ofl_local are looked at. Their outer source must be a trusted peer
 *             (ofl_peers: the MR's home agent) or the care-of address registered for the inner source's
 *             prefix (ofl_ingress: RFC 3963 §6.3 on the home agent); anything else is dropped and counted.
 *             A packet whose inner destination has an ofl_encap_dst entry goes straight back into the
 *             tunnel, outer header rewritten in place (a home agent between two mobile networks; a mobile
 *             router forwarding to the next host during a handover, RFC 5568 §4.1-style); the rest is
 *             decapsulated and continues into the stack.
 *   tc/bridge fast path, tc clsact egress on a mobile network's bridge (the guest link). A decapsulated
 *             GSO packet keeps the tunnel's GSO type (no helper on kernels before the DECAP_IPXIP6 flag
 *             can clear it) and the bridge, which has no tunnel offloads, would cut it into MTU-sized
 *             frames in software (cn → guest at ~1/3 of the plain path). This sends known-unicast GSO
 *             packets straight to the guest's port instead, after the stack has routed them (hop limit,
 *             netfilter, neighbour all done): ofl_fdb, a mirror of the bridge's forwarding database
 *             kept by the daemon, gives the port. Unknown or gone: the bridge, as before.
 *
 * Keys: IPv6 prefixes; IPv4 prefixes as IPv4-mapped IPv6 (::ffff:a.b.c.d, prefix length 96 + n).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Kernel >= 6.3; not in Debian 12's 6.1 uapi headers. Older kernels fail the call: counted as dec_err. */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif


#define MAX_ENTRIES (1 << 20)
#define OUTER_HOP_LIMIT 64

struct ofl_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Outer header of a tunnel: this end's address, the other end's. */
struct ofl_tunnel {
	__u8 src[16];
	__u8 dst[16];
};

struct ofl_addr {
	__u8 addr[16];
};

/* The order is the counters' ABI: src/dataplane/bpf/maps.ts names them. */
enum ofl_counter {
	C_ENCAP_OK,
	C_ENCAP_NO_BINDING,
	C_ENCAP_ERROR,
	C_DECAP_OK,
	C_DECAP_NO_BINDING,
	C_DECAP_WRONG_SOURCE,
	C_DECAP_ERROR,
	C_FORWARD_OK,
	C_FORWARD_ERROR,
	C_NOT_LOCAL,
	C_BRIDGE_FAST,
	C_MAX
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct ofl_key);
	__type(value, struct ofl_tunnel);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_encap_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct ofl_key);
	__type(value, struct ofl_tunnel);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_encap_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct ofl_key);
	__type(value, struct ofl_addr);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_ingress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct ofl_addr);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct ofl_addr);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_local SEC(".maps");

/* One entry of a bridge's forwarding database: which port a MAC address is behind. */
struct ofl_fdb_key {
	__u32 bridge;		/* ifindex */
	__u8 mac[6];
	__u16 pad;		/* zero */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, struct ofl_fdb_key);
	__type(value, __u32);	/* port ifindex */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_fdb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ofl_stats SEC(".maps");

static __always_inline void count(__u32 counter)
{
	__u64 *n = bpf_map_lookup_elem(&ofl_stats, &counter);

	if (n)
		*n += 1;
}

static __always_inline void v4mapped(__u8 *addr, __be32 v4)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &v4, 4);
}

/* Inner source and destination of the packet at `off`, as lookup keys. */
static __always_inline int inner_keys(struct __sk_buff *skb, __u32 off, __u8 nexthdr,
				      struct ofl_key *src, struct ofl_key *dst)
{
	src->prefixlen = 128;
	dst->prefixlen = 128;
	if (nexthdr == IPPROTO_IPV6) {
		if (bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, saddr), src->addr, 16) ||
		    bpf_skb_load_bytes(skb, off + offsetof(struct ipv6hdr, daddr), dst->addr, 16))
			return -1;
		return 0;
	}
	__be32 a[2];

	if (bpf_skb_load_bytes(skb, off + offsetof(struct iphdr, saddr), a, 8))
		return -1;
	v4mapped(src->addr, a[0]);
	v4mapped(dst->addr, a[1]);
	return 0;
}

SEC("lwt_xmit")
int ofl_encap(struct __sk_buff *skb)
{
	struct ofl_key src, dst;
	struct ipv6hdr outer = {};
	struct ofl_tunnel *t;
	__u8 nexthdr;

	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		nexthdr = IPPROTO_IPV6;
	else if (skb->protocol == bpf_htons(ETH_P_IP))
		nexthdr = IPPROTO_IPIP;
	else
		return BPF_OK;
	if (inner_keys(skb, 0, nexthdr, &src, &dst))
		goto error;
	t = bpf_map_lookup_elem(&ofl_encap_src, &src);
	if (!t)
		t = bpf_map_lookup_elem(&ofl_encap_dst, &dst);
	if (!t) {
		count(C_ENCAP_NO_BINDING);
		return BPF_DROP;
	}
	outer.version = 6;
	/*
	 * Linux (6.18 at least) lwt_bpf.c handle_gso_encap() compares the next header with IPPROTO_IP (0)
	 * where it means IPPROTO_IPIP (4), and refuses every GSO IPv4 packet pushed with next header 4
	 * (IPv4 TCP crawls). Pushed with 0 the GSO type comes out right; the real value is written after.
	 */
	outer.nexthdr = nexthdr == IPPROTO_IPIP ? 0 : nexthdr;
	outer.hop_limit = OUTER_HOP_LIMIT;
	outer.payload_len = bpf_htons(skb->len);
	__builtin_memcpy(&outer.saddr, t->src, 16);
	__builtin_memcpy(&outer.daddr, t->dst, 16);
	if (bpf_lwt_push_encap(skb, BPF_LWT_ENCAP_IP, &outer, sizeof(outer)))
		goto error;
	if (nexthdr == IPPROTO_IPIP &&
	    bpf_skb_store_bytes(skb, offsetof(struct ipv6hdr, nexthdr), &nexthdr, 1, 0))
		goto error;
	count(C_ENCAP_OK);
	return BPF_LWT_REROUTE;
error:
	count(C_ENCAP_ERROR);
	return BPF_DROP;
}

#define OUTER (sizeof(struct ethhdr))
#define INNER (sizeof(struct ethhdr) + sizeof(struct ipv6hdr))

static __always_inline int addr_eq(const __u8 *a, const __u8 *b)
{
	__u64 x[2], y[2];

	__builtin_memcpy(x, a, 16);
	__builtin_memcpy(y, b, 16);
	return x[0] == y[0] && x[1] == y[1];
}

/*
 * The inner packet's hop limit (IPv6) or TTL (IPv4) minus one, as a router between two tunnels would do.
 * 0: done; 1: the packet has no hops left (the stack decapsulates it and sends the ICMP error); -1: error.
 */
static __always_inline int inner_hop(struct __sk_buff *skb, __u8 nexthdr)
{
	if (nexthdr == IPPROTO_IPV6) {
		__u8 hops;

		if (bpf_skb_load_bytes(skb, INNER + offsetof(struct ipv6hdr, hop_limit), &hops, 1) || hops <= 1)
			return 1;
		hops -= 1;
		return bpf_skb_store_bytes(skb, INNER + offsetof(struct ipv6hdr, hop_limit), &hops, 1, 0) ? -1 : 0;
	}
	/* IPv4: TTL and protocol form one 16-bit word of the header checksum (RFC 1624 incremental update) */
	__be16 old, neu;

	if (bpf_skb_load_bytes(skb, INNER + offsetof(struct iphdr, ttl), &old, 2) || (bpf_ntohs(old) >> 8) <= 1)
		return 1;
	neu = bpf_htons(bpf_ntohs(old) - 0x100);
	if (bpf_l3_csum_replace(skb, INNER + offsetof(struct iphdr, check), old, neu, 2) ||
	    bpf_skb_store_bytes(skb, INNER + offsetof(struct iphdr, ttl), &neu, 2, 0))
		return -1;
	return 0;
}

/*
 * Send a tunnel packet on to another tunnel endpoint without decapsulating it: the outer addresses are
 * rewritten in place and the inner hop limit (TTL) decremented, as a router between two tunnels would.
 * Returns a tc verdict, or -1 to let the packet be decapsulated into the stack instead (inner hop limit
 * exhausted: the stack sends the ICMP error).
 */
static __always_inline int forward(struct __sk_buff *skb, __u8 nexthdr, const struct ofl_tunnel *t)
{
	struct bpf_fib_lookup fib = {};
	__u8 outer_hops = OUTER_HOP_LIMIT;
	int hop = inner_hop(skb, nexthdr);

	if (hop > 0)
		return -1;
	if (hop < 0 ||
	    bpf_skb_store_bytes(skb, OUTER + offsetof(struct ipv6hdr, hop_limit), &outer_hops, 1, 0) ||
	    bpf_skb_store_bytes(skb, OUTER + offsetof(struct ipv6hdr, saddr), t->src, 16, 0) ||
	    bpf_skb_store_bytes(skb, OUTER + offsetof(struct ipv6hdr, daddr), t->dst, 16, 0))
		goto error;
	fib.family = 10; /* AF_INET6 */
	fib.ifindex = skb->ingress_ifindex;
	__builtin_memcpy(fib.ipv6_src, t->src, 16);
	__builtin_memcpy(fib.ipv6_dst, t->dst, 16);
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		goto error;
	count(C_FORWARD_OK);
	return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
error:
	count(C_FORWARD_ERROR);
	return TC_ACT_SHOT;
}

SEC("tc")
int ofl_decap(struct __sk_buff *skb)
{
	struct ofl_addr outer_src, outer_dst;
	struct ofl_key src, dst;
	__u8 nexthdr;

	if (skb->protocol != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	/* the outer header is read in place: make it linear (a no-op when it already is) */
	if ((long)skb->data + INNER > (long)skb->data_end && bpf_skb_pull_data(skb, INNER))
		return TC_ACT_OK;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);

	if ((void *)(ip6 + 1) > end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return TC_ACT_OK;
	nexthdr = ip6->nexthdr;
	if (nexthdr != IPPROTO_IPV6 && nexthdr != IPPROTO_IPIP)
		return TC_ACT_OK;
	__builtin_memcpy(outer_src.addr, &ip6->saddr, 16);
	__builtin_memcpy(outer_dst.addr, &ip6->daddr, 16);
	if (!bpf_map_lookup_elem(&ofl_local, &outer_dst)) {
		count(C_NOT_LOCAL);
		return TC_ACT_OK;
	}
	if (inner_keys(skb, INNER, nexthdr, &src, &dst))
		goto error;

	if (!bpf_map_lookup_elem(&ofl_peers, &outer_src)) {
		/* RFC 3963 §6.3: the outer source must be the care-of address registered for the inner source */
		struct ofl_addr *coa = bpf_map_lookup_elem(&ofl_ingress, &src);

		if (!coa) {
			count(C_DECAP_NO_BINDING);
			return TC_ACT_SHOT;
		}
		if (!addr_eq(coa->addr, outer_src.addr)) {
			count(C_DECAP_WRONG_SOURCE);
			return TC_ACT_SHOT;
		}
	}

	struct ofl_tunnel *next = bpf_map_lookup_elem(&ofl_encap_dst, &dst);

	if (next) {
		int verdict = forward(skb, nexthdr, next);

		if (verdict >= 0)
			return verdict;
	}

	/* FIXED_GSO: a GRO'd tunnel packet's gso_size already is the inner MSS; keep it */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO;

	if (nexthdr == IPPROTO_IPIP)
		flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV4; /* sets skb->protocol */
	if (bpf_skb_adjust_room(skb, -(__s32)sizeof(struct ipv6hdr), BPF_ADJ_ROOM_MAC, flags))
		goto error;
	if (nexthdr == IPPROTO_IPIP) {
		__be16 proto = bpf_htons(ETH_P_IP);

		if (bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, 2, 0))
			goto error;
	}
	count(C_DECAP_OK);
	return TC_ACT_OK;
error:
	count(C_DECAP_ERROR);
	return TC_ACT_SHOT;
}

SEC("tc/bridge")
int ofl_bridge(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ofl_fdb_key key = {};
	__u32 *port, mtu = 0;

	/* only what the bridge would cut up: GSO packets (gso_segs is 0 after a decap; gso_size is not) */
	if (!skb->gso_size || (void *)(eth + 1) > end || (eth->h_dest[0] & 1))
		return TC_ACT_OK;
	key.bridge = skb->ifindex;
	__builtin_memcpy(key.mac, eth->h_dest, 6);
	port = bpf_map_lookup_elem(&ofl_fdb, &key);
	if (!port)
		return TC_ACT_OK;
	/* a port that went away (the mirror lags the kernel by an event): let the bridge decide */
	if (bpf_check_mtu(skb, *port, &mtu, 0, 0) < 0)
		return TC_ACT_OK;
	count(C_BRIDGE_FAST);
	return bpf_redirect(*port, 0);
}

char LICENSE[] SEC("license") = "GPL";
