// SPDX-License-Identifier: MIT
/*
 * The bpf(2) calls offlink's eBPF data plane needs, as a Node-API addon: open pinned maps, read and
 * write map entries (one at a time or in batches), find a loaded program's maps, and mount a bpffs.
 * Node has no syscall interface, and a process per map update costs ~3 ms (measured with bpftool) where
 * the syscall costs ~5 µs. Synchronous on purpose: each call is one short syscall.
 *
 * Built by scripts/build with the system C compiler against Node's headers (no node-gyp, no libbpf):
 *   cc -O2 -shared -fPIC -I<node include> syscall.c -o build/offlink_bpf.node
 *
 * Errors are thrown as Error objects whose `code` is the errno name ("ENOENT", "EPERM", ...).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#define BPF_FS_MAGIC 0xcafe4a11

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static napi_value throw_errno(napi_env env, const char *what)
{
	int err = errno;
	char msg[256];
	const char *name = strerrorname_np(err);

	snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err));
	napi_throw_error(env, name ? name : "EUNKNOWN", msg);
	return NULL;
}

static napi_value throw_type(napi_env env, const char *msg)
{
	napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
	return NULL;
}

#define ARGS(n)                                                                    \
	size_t argc = n;                                                           \
	napi_value argv[n];                                                        \
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) \
		return throw_type(env, "missing arguments");

static int get_u32(napi_env env, napi_value v, uint32_t *out)
{
	return napi_get_value_uint32(env, v, out) == napi_ok ? 0 : -1;
}

/* A Buffer or Uint8Array argument; `data` stays valid for the call. */
static int get_bytes(napi_env env, napi_value v, void **data, size_t *len)
{
	bool is;

	if (napi_is_typedarray(env, v, &is) != napi_ok || !is)
		return -1;
	napi_typedarray_type type;
	napi_value ab;
	size_t off;
	if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok || type != napi_uint8_array)
		return -1;
	return 0;
}

static int get_path(napi_env env, napi_value v, char *buf, size_t size)
{
	size_t len;

	if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok || len == 0 || len >= size - 1)
		return -1;
	return 0;
}

static napi_value number(napi_env env, double n)
{
	napi_value v;

	napi_create_double(env, n, &v);
	return v;
}

static napi_value boolean(napi_env env, bool b)
{
	napi_value v;

	napi_get_boolean(env, b, &v);
	return v;
}

static napi_value null_value(napi_env env)
{
	napi_value v;

	napi_get_null(env, &v);
	return v;
}

static napi_value buffer_of(napi_env env, const void *data, size_t len)
{
	napi_value v;
	void *copy;

	napi_create_buffer_copy(env, len, data, &copy, &v);
	return v;
}

/* objGet(path) -> fd */
static napi_value obj_get(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char path[4096];
	if (get_path(env, argv[0], path, sizeof(path)))
		return throw_type(env, "objGet(path: string)");
	union bpf_attr attr = { 0 };
	attr.pathname = (uint64_t)(uintptr_t)path;
	long fd = sys_bpf(BPF_OBJ_GET, &attr);
	if (fd < 0)
		return throw_errno(env, path);
	return number(env, fd);
}

/* objPin(fd, path) */
static napi_value obj_pin(napi_env env, napi_callback_info info)
{
	ARGS(2);
	uint32_t fd;
	char path[4096];
	if (get_u32(env, argv[0], &fd) || get_path(env, argv[1], path, sizeof(path)))
		return throw_type(env, "objPin(fd: number, path: string)");
	union bpf_attr attr = { 0 };
	attr.bpf_fd = fd;
	attr.pathname = (uint64_t)(uintptr_t)path;
	if (sys_bpf(BPF_OBJ_PIN, &attr) < 0)
		return throw_errno(env, path);
	return NULL;
}

static napi_value get_fd_by_id(napi_env env, napi_callback_info info, int cmd, const char *what)
{
	ARGS(1);
	uint32_t id;
	if (get_u32(env, argv[0], &id))
		return throw_type(env, "expected an id");
	union bpf_attr attr = { 0 };
	if (cmd == BPF_PROG_GET_FD_BY_ID)
		attr.prog_id = id;
	else
		attr.map_id = id;
	long fd = sys_bpf(cmd, &attr);
	if (fd < 0)
		return throw_errno(env, what);
	return number(env, fd);
}

static napi_value map_get_fd_by_id(napi_env env, napi_callback_info info)
{
	return get_fd_by_id(env, info, BPF_MAP_GET_FD_BY_ID, "BPF_MAP_GET_FD_BY_ID");
}

static napi_value prog_get_fd_by_id(napi_env env, napi_callback_info info)
{
	return get_fd_by_id(env, info, BPF_PROG_GET_FD_BY_ID, "BPF_PROG_GET_FD_BY_ID");
}

/* progNextId(id) -> the next loaded program's id, or null after the last (BPF_PROG_GET_NEXT_ID) */
static napi_value prog_next_id(napi_env env, napi_callback_info info)
{
	ARGS(1);
	uint32_t id;
	if (get_u32(env, argv[0], &id))
		return throw_type(env, "progNextId(id: number)");
	union bpf_attr attr = { 0 };
	attr.start_id = id;
	if (sys_bpf(BPF_PROG_GET_NEXT_ID, &attr) < 0)
		return errno == ENOENT ? null_value(env) : throw_errno(env, "BPF_PROG_GET_NEXT_ID");
	return number(env, attr.next_id);
}

static void set(napi_env env, napi_value obj, const char *key, napi_value v)
{
	napi_set_named_property(env, obj, key, v);
}

static napi_value string_of(napi_env env, const char *s)
{
	napi_value v;

	napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
	return v;
}

/* progInfo(fd) -> { id, name, tag (hex), mapIds } */
static napi_value prog_info(napi_env env, napi_callback_info info)
{
	ARGS(1);
	uint32_t fd;
	if (get_u32(env, argv[0], &fd))
		return throw_type(env, "progInfo(fd: number)");
	uint32_t ids[64];
	struct bpf_prog_info pi;
	memset(&pi, 0, sizeof(pi));
	pi.nr_map_ids = 64;
	pi.map_ids = (uint64_t)(uintptr_t)ids;
	union bpf_attr attr = { 0 };
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(pi);
	attr.info.info = (uint64_t)(uintptr_t)&pi;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0)
		return throw_errno(env, "BPF_OBJ_GET_INFO_BY_FD");
	napi_value obj, arr;
	char name[BPF_OBJ_NAME_LEN + 1] = { 0 }, tag[2 * BPF_TAG_SIZE + 1];
	memcpy(name, pi.name, BPF_OBJ_NAME_LEN);
	for (int i = 0; i < BPF_TAG_SIZE; i++)
		sprintf(tag + 2 * i, "%02x", pi.tag[i]);
	napi_create_object(env, &obj);
	set(env, obj, "id", number(env, pi.id));
	set(env, obj, "type", number(env, pi.type));
	set(env, obj, "name", string_of(env, name));
	set(env, obj, "tag", string_of(env, tag));
	uint32_t n = pi.nr_map_ids < 64 ? pi.nr_map_ids : 64;
	napi_create_array_with_length(env, n, &arr);
	for (uint32_t i = 0; i < n; i++)
		napi_set_element(env, arr, i, number(env, ids[i]));
	set(env, obj, "mapIds", arr);
	return obj;
}

/* mapInfo(fd) -> { id, type, keySize, valueSize, maxEntries, flags, name } */
static napi_value map_info(napi_env env, napi_callback_info info)
{
	ARGS(1);
	uint32_t fd;
	if (get_u32(env, argv[0], &fd))
		return throw_type(env, "mapInfo(fd: number)");
	struct bpf_map_info mi;
	memset(&mi, 0, sizeof(mi));
	union bpf_attr attr = { 0 };
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(mi);
	attr.info.info = (uint64_t)(uintptr_t)&mi;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0)
		return throw_errno(env, "BPF_OBJ_GET_INFO_BY_FD");
	napi_value obj;
	char name[BPF_OBJ_NAME_LEN + 1] = { 0 };
	memcpy(name, mi.name, BPF_OBJ_NAME_LEN);
	napi_create_object(env, &obj);
	set(env, obj, "id", number(env, mi.id));
	set(env, obj, "type", number(env, mi.type));
	set(env, obj, "keySize", number(env, mi.key_size));
	set(env, obj, "valueSize", number(env, mi.value_size));
	set(env, obj, "maxEntries", number(env, mi.max_entries));
	set(env, obj, "flags", number(env, mi.map_flags));
	set(env, obj, "name", string_of(env, name));
	return obj;
}

/* mapLookup(fd, key, valueSize) -> Buffer | null */
static napi_value map_lookup(napi_env env, napi_callback_info info)
{
	ARGS(3);
	uint32_t fd, size;
	void *key;
	size_t klen;
	if (get_u32(env, argv[0], &fd) || get_bytes(env, argv[1], &key, &klen) || get_u32(env, argv[2], &size))
		return throw_type(env, "mapLookup(fd: number, key: Uint8Array, valueSize: number)");
	void *value = calloc(1, size ? size : 1);
	if (!value)
		return throw_errno(env, "calloc");
	union bpf_attr attr = { 0 };
	attr.map_fd = fd;
	attr.key = (uint64_t)(uintptr_t)key;
	attr.value = (uint64_t)(uintptr_t)value;
	napi_value out;
	if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0)
		out = errno == ENOENT ? null_value(env) : throw_errno(env, "BPF_MAP_LOOKUP_ELEM");
	else
		out = buffer_of(env, value, size);
	free(value);
	return out;
}

/* mapUpdate(fd, key, value, flags) */
static napi_value map_update(napi_env env, napi_callback_info info)
{
	ARGS(4);
	uint32_t fd, flags;
	void *key, *value;
	size_t klen, vlen;
	if (get_u32(env, argv[0], &fd) || get_bytes(env, argv[1], &key, &klen) ||
	    get_bytes(env, argv[2], &value, &vlen) || get_u32(env, argv[3], &flags))
		return throw_type(env, "mapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags: number)");
	union bpf_attr attr = { 0 };
	attr.map_fd = fd;
	attr.key = (uint64_t)(uintptr_t)key;
	attr.value = (uint64_t)(uintptr_t)value;
	attr.flags = flags;
	if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr) < 0)
		return throw_errno(env, "BPF_MAP_UPDATE_ELEM");
	return NULL;
}

/* mapDelete(fd, key) -> true if it was there */
static napi_value map_delete(napi_env env, napi_callback_info info)
{
	ARGS(2);
	uint32_t fd;
	void *key;
	size_t klen;
	if (get_u32(env, argv[0], &fd) || get_bytes(env, argv[1], &key, &klen))
		return throw_type(env, "mapDelete(fd: number, key: Uint8Array)");
	union bpf_attr attr = { 0 };
	attr.map_fd = fd;
	attr.key = (uint64_t)(uintptr_t)key;
	if (sys_bpf(BPF_MAP_DELETE_ELEM, &attr) < 0) {
		if (errno == ENOENT)
			return boolean(env, false);
		return throw_errno(env, "BPF_MAP_DELETE_ELEM");
	}
	return boolean(env, true);
}

/* mapNextKey(fd, key | null, keySize) -> Buffer | null (no more keys) */
static napi_value map_next_key(napi_env env, napi_callback_info info)
{
	ARGS(3);
	uint32_t fd, size;
	void *key = NULL;
	size_t klen;
	napi_valuetype t;
	napi_typeof(env, argv[1], &t);
	if (get_u32(env, argv[0], &fd) || get_u32(env, argv[2], &size) ||
	    (t != napi_null && get_bytes(env, argv[1], &key, &klen)))
		return throw_type(env, "mapNextKey(fd: number, key: Uint8Array | null, keySize: number)");
	void *next = calloc(1, size ? size : 1);
	if (!next)
		return throw_errno(env, "calloc");
	union bpf_attr attr = { 0 };
	attr.map_fd = fd;
	attr.key = (uint64_t)(uintptr_t)key;
	attr.next_key = (uint64_t)(uintptr_t)next;
	napi_value out;
	if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &attr) < 0)
		out = errno == ENOENT ? null_value(env) : throw_errno(env, "BPF_MAP_GET_NEXT_KEY");
	else
		out = buffer_of(env, next, size);
	free(next);
	return out;
}

/*
 * mapUpdateBatch(fd, keys, values, count, flags) -> count. Keys and values are `count` fixed-size records
 * back to back. On error, the thrown Error carries `done`: how many went in.
 */
static napi_value map_update_batch(napi_env env, napi_callback_info info)
{
	ARGS(5);
	uint32_t fd, count, flags;
	void *keys, *values;
	size_t klen, vlen;
	if (get_u32(env, argv[0], &fd) || get_bytes(env, argv[1], &keys, &klen) ||
	    get_bytes(env, argv[2], &values, &vlen) || get_u32(env, argv[3], &count) || get_u32(env, argv[4], &flags))
		return throw_type(env,
				  "mapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, flags: number)");
	union bpf_attr attr = { 0 };
	attr.batch.map_fd = fd;
	attr.batch.keys = (uint64_t)(uintptr_t)keys;
	attr.batch.values = (uint64_t)(uintptr_t)values;
	attr.batch.count = count;
	attr.batch.elem_flags = flags;
	if (sys_bpf(BPF_MAP_UPDATE_BATCH, &attr) < 0) {
		char what[64];
		snprintf(what, sizeof(what), "BPF_MAP_UPDATE_BATCH (%u of %u done)", attr.batch.count, count);
		return throw_errno(env, what);
	}
	return number(env, attr.batch.count);
}

/* isBpffs(dir) -> boolean (false if it does not exist) */
static napi_value is_bpffs(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char path[4096];
	if (get_path(env, argv[0], path, sizeof(path)))
		return throw_type(env, "isBpffs(path: string)");
	struct statfs st;
	if (statfs(path, &st) < 0) {
		if (errno == ENOENT)
			return boolean(env, false);
		return throw_errno(env, path);
	}
	return boolean(env, (unsigned long)st.f_type == BPF_FS_MAGIC);
}

/* mountBpffs(dir): a new bpffs instance on an existing directory, in this process's mount namespace */
static napi_value mount_bpffs(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char path[4096];
	if (get_path(env, argv[0], path, sizeof(path)))
		return throw_type(env, "mountBpffs(path: string)");
	if (mount("bpf", path, "bpf", 0, "mode=0700") < 0)
		return throw_errno(env, path);
	return NULL;
}

/* unmount(dir): lazily, so open fds do not keep it busy */
static napi_value unmount(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char path[4096];
	if (get_path(env, argv[0], path, sizeof(path)))
		return throw_type(env, "unmount(path: string)");
	if (umount2(path, MNT_DETACH) < 0)
		return throw_errno(env, path);
	return NULL;
}

/*
 * tunOpen(name): a non-persistent tun device `name` (IFF_TUN | IFF_NO_PI) and its fd. Not bpf: the one
 * other call offlink needs that Node lacks (an ioctl). The device, with its addresses and routes, lives
 * exactly as long as the fd: the kernel removes it when the process holding the fd dies, even by kill -9
 * (the home agent binds its anycast announcement to it, docs/homeagent.md).
 */
static napi_value tun_open(napi_env env, napi_callback_info info)
{
	ARGS(1);
	char name[IFNAMSIZ + 1];
	size_t len = 0;
	if (napi_get_value_string_utf8(env, argv[0], name, sizeof(name), &len) != napi_ok || len == 0 ||
	    len >= IFNAMSIZ)
		return throw_type(env, "tunOpen(name: string of 1-15 bytes)");
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return throw_errno(env, "/dev/net/tun");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	memcpy(ifr.ifr_name, name, len);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return throw_errno(env, name);
	}
	return number(env, fd);
}

/* close(fd) */
static napi_value close_fd(napi_env env, napi_callback_info info)
{
	ARGS(1);
	uint32_t fd;
	if (get_u32(env, argv[0], &fd))
		return throw_type(env, "close(fd: number)");
	if (close(fd) < 0)
		return throw_errno(env, "close");
	return NULL;
}

/*
 * adjustRoomProbe(flags) -> the return value of bpf_skb_adjust_room(skb, -40, BPF_ADJ_ROOM_MAC, flags) on
 * a crafted IPv4-in-IPv6 packet (0, or a negative errno such as -EINVAL for flags this kernel does not
 * know). A five-instruction sched_cls program, loaded here and run once with BPF_PROG_TEST_RUN, so the
 * answer is the kernel's own and not a guess from its version number; nothing is attached anywhere.
 */
static napi_value adjust_room_probe(napi_env env, napi_callback_info info)
{
	ARGS(1);
	uint32_t flags;
	if (get_u32(env, argv[0], &flags))
		return throw_type(env, "adjustRoomProbe(flags: number)");
	struct bpf_insn prog[] = {
		/* r2 = -40; r3 = BPF_ADJ_ROOM_MAC; r4 = flags; r0 = bpf_skb_adjust_room(r1 = skb, ...); exit */
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = -40 },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = BPF_ADJ_ROOM_MAC },
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_4, .imm = (int32_t)flags },
		{ .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_skb_adjust_room },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	static const char license[] = "GPL";
	union bpf_attr attr = { 0 };
	attr.prog_type = BPF_PROG_TYPE_SCHED_CLS;
	attr.insns = (uint64_t)(uintptr_t)prog;
	attr.insn_cnt = sizeof(prog) / sizeof(prog[0]);
	attr.license = (uint64_t)(uintptr_t)license;
	int fd = sys_bpf(BPF_PROG_LOAD, &attr);
	if (fd < 0)
		return throw_errno(env, "BPF_PROG_LOAD (adjust_room probe)");
	/* Ethernet (IPv6), IPv6 (next header 4, payload 20), IPv4 (20 bytes): 74 bytes */
	uint8_t pkt[14 + 40 + 20] = { 0 };
	pkt[12] = 0x86, pkt[13] = 0xdd;
	pkt[14] = 0x60, pkt[19] = 20, pkt[20] = 4, pkt[21] = 64;
	pkt[14 + 40] = 0x45, pkt[14 + 40 + 3] = 20, pkt[14 + 40 + 8] = 64, pkt[14 + 40 + 9] = 17;
	uint8_t out[sizeof(pkt) + 64];
	memset(&attr, 0, sizeof(attr));
	attr.test.prog_fd = fd;
	attr.test.data_in = (uint64_t)(uintptr_t)pkt;
	attr.test.data_size_in = sizeof(pkt);
	attr.test.data_out = (uint64_t)(uintptr_t)out;
	attr.test.data_size_out = sizeof(out);
	attr.test.repeat = 1;
	long rc = sys_bpf(BPF_PROG_TEST_RUN, &attr);
	int saved = errno;
	close(fd);
	if (rc < 0) {
		errno = saved;
		return throw_errno(env, "BPF_PROG_TEST_RUN (adjust_room probe)");
	}
	return number(env, (int32_t)attr.test.retval);
}

static napi_value init(napi_env env, napi_value exports)
{
	static const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {
		{ "objGet", obj_get },
		{ "objPin", obj_pin },
		{ "mapGetFdById", map_get_fd_by_id },
		{ "progGetFdById", prog_get_fd_by_id },
		{ "progNextId", prog_next_id },
		{ "progInfo", prog_info },
		{ "mapInfo", map_info },
		{ "mapLookup", map_lookup },
		{ "mapUpdate", map_update },
		{ "mapDelete", map_delete },
		{ "mapNextKey", map_next_key },
		{ "mapUpdateBatch", map_update_batch },
		{ "isBpffs", is_bpffs },
		{ "mountBpffs", mount_bpffs },
		{ "unmount", unmount },
		{ "close", close_fd },
		{ "tunOpen", tun_open },
		{ "adjustRoomProbe", adjust_room_probe },
	};
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		napi_value f;
		napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
		napi_set_named_property(env, exports, fns[i].name, f);
	}
	return exports;
}

NAPI_MODULE(offlink_bpf, init)
