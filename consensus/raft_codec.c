/*
 * raft_codec.c - byte forms of what the core's callers store or send inside
 * entries: the configuration (the data of a RAFT_ENTRY_CONFIG entry), and
 * the persisted records (entry, hard state, snapshot meta) that end in a
 * CRC32C so a storage layer detects a flipped bit instead of applying it.
 *
 * The checksum lives here, next to the formats, so that the in-memory
 * storage of the simulator and the node's LMDB storage (LMDB does not
 * checksum its pages) share one definition. Not here: the wire encoding of
 * messages (the node's protobuf), any I/O.
 */
#include "raft.h"

#include <string.h>

/* ---- CRC32C (Castagnoli, reflected polynomial 0x82F63B78) ---- */

static const uint32_t crc32c_table[256] = {
    0x00000000U, 0xf26b8303U, 0xe13b70f7U, 0x1350f3f4U, 0xc79a971fU, 0x35f1141cU, 0x26a1e7e8U,
    0xd4ca64ebU, 0x8ad958cfU, 0x78b2dbccU, 0x6be22838U, 0x9989ab3bU, 0x4d43cfd0U, 0xbf284cd3U,
    0xac78bf27U, 0x5e133c24U, 0x105ec76fU, 0xe235446cU, 0xf165b798U, 0x030e349bU, 0xd7c45070U,
    0x25afd373U, 0x36ff2087U, 0xc494a384U, 0x9a879fa0U, 0x68ec1ca3U, 0x7bbcef57U, 0x89d76c54U,
    0x5d1d08bfU, 0xaf768bbcU, 0xbc267848U, 0x4e4dfb4bU, 0x20bd8edeU, 0xd2d60dddU, 0xc186fe29U,
    0x33ed7d2aU, 0xe72719c1U, 0x154c9ac2U, 0x061c6936U, 0xf477ea35U, 0xaa64d611U, 0x580f5512U,
    0x4b5fa6e6U, 0xb93425e5U, 0x6dfe410eU, 0x9f95c20dU, 0x8cc531f9U, 0x7eaeb2faU, 0x30e349b1U,
    0xc288cab2U, 0xd1d83946U, 0x23b3ba45U, 0xf779deaeU, 0x05125dadU, 0x1642ae59U, 0xe4292d5aU,
    0xba3a117eU, 0x4851927dU, 0x5b016189U, 0xa96ae28aU, 0x7da08661U, 0x8fcb0562U, 0x9c9bf696U,
    0x6ef07595U, 0x417b1dbcU, 0xb3109ebfU, 0xa0406d4bU, 0x522bee48U, 0x86e18aa3U, 0x748a09a0U,
    0x67dafa54U, 0x95b17957U, 0xcba24573U, 0x39c9c670U, 0x2a993584U, 0xd8f2b687U, 0x0c38d26cU,
    0xfe53516fU, 0xed03a29bU, 0x1f682198U, 0x5125dad3U, 0xa34e59d0U, 0xb01eaa24U, 0x42752927U,
    0x96bf4dccU, 0x64d4cecfU, 0x77843d3bU, 0x85efbe38U, 0xdbfc821cU, 0x2997011fU, 0x3ac7f2ebU,
    0xc8ac71e8U, 0x1c661503U, 0xee0d9600U, 0xfd5d65f4U, 0x0f36e6f7U, 0x61c69362U, 0x93ad1061U,
    0x80fde395U, 0x72966096U, 0xa65c047dU, 0x5437877eU, 0x4767748aU, 0xb50cf789U, 0xeb1fcbadU,
    0x197448aeU, 0x0a24bb5aU, 0xf84f3859U, 0x2c855cb2U, 0xdeeedfb1U, 0xcdbe2c45U, 0x3fd5af46U,
    0x7198540dU, 0x83f3d70eU, 0x90a324faU, 0x62c8a7f9U, 0xb602c312U, 0x44694011U, 0x5739b3e5U,
    0xa55230e6U, 0xfb410cc2U, 0x092a8fc1U, 0x1a7a7c35U, 0xe811ff36U, 0x3cdb9bddU, 0xceb018deU,
    0xdde0eb2aU, 0x2f8b6829U, 0x82f63b78U, 0x709db87bU, 0x63cd4b8fU, 0x91a6c88cU, 0x456cac67U,
    0xb7072f64U, 0xa457dc90U, 0x563c5f93U, 0x082f63b7U, 0xfa44e0b4U, 0xe9141340U, 0x1b7f9043U,
    0xcfb5f4a8U, 0x3dde77abU, 0x2e8e845fU, 0xdce5075cU, 0x92a8fc17U, 0x60c37f14U, 0x73938ce0U,
    0x81f80fe3U, 0x55326b08U, 0xa759e80bU, 0xb4091bffU, 0x466298fcU, 0x1871a4d8U, 0xea1a27dbU,
    0xf94ad42fU, 0x0b21572cU, 0xdfeb33c7U, 0x2d80b0c4U, 0x3ed04330U, 0xccbbc033U, 0xa24bb5a6U,
    0x502036a5U, 0x4370c551U, 0xb11b4652U, 0x65d122b9U, 0x97baa1baU, 0x84ea524eU, 0x7681d14dU,
    0x2892ed69U, 0xdaf96e6aU, 0xc9a99d9eU, 0x3bc21e9dU, 0xef087a76U, 0x1d63f975U, 0x0e330a81U,
    0xfc588982U, 0xb21572c9U, 0x407ef1caU, 0x532e023eU, 0xa145813dU, 0x758fe5d6U, 0x87e466d5U,
    0x94b49521U, 0x66df1622U, 0x38cc2a06U, 0xcaa7a905U, 0xd9f75af1U, 0x2b9cd9f2U, 0xff56bd19U,
    0x0d3d3e1aU, 0x1e6dcdeeU, 0xec064eedU, 0xc38d26c4U, 0x31e6a5c7U, 0x22b65633U, 0xd0ddd530U,
    0x0417b1dbU, 0xf67c32d8U, 0xe52cc12cU, 0x1747422fU, 0x49547e0bU, 0xbb3ffd08U, 0xa86f0efcU,
    0x5a048dffU, 0x8ecee914U, 0x7ca56a17U, 0x6ff599e3U, 0x9d9e1ae0U, 0xd3d3e1abU, 0x21b862a8U,
    0x32e8915cU, 0xc083125fU, 0x144976b4U, 0xe622f5b7U, 0xf5720643U, 0x07198540U, 0x590ab964U,
    0xab613a67U, 0xb831c993U, 0x4a5a4a90U, 0x9e902e7bU, 0x6cfbad78U, 0x7fab5e8cU, 0x8dc0dd8fU,
    0xe330a81aU, 0x115b2b19U, 0x020bd8edU, 0xf0605beeU, 0x24aa3f05U, 0xd6c1bc06U, 0xc5914ff2U,
    0x37faccf1U, 0x69e9f0d5U, 0x9b8273d6U, 0x88d28022U, 0x7ab90321U, 0xae7367caU, 0x5c18e4c9U,
    0x4f48173dU, 0xbd23943eU, 0xf36e6f75U, 0x0105ec76U, 0x12551f82U, 0xe03e9c81U, 0x34f4f86aU,
    0xc69f7b69U, 0xd5cf889dU, 0x27a40b9eU, 0x79b737baU, 0x8bdcb4b9U, 0x988c474dU, 0x6ae7c44eU,
    0xbe2da0a5U, 0x4c4623a6U, 0x5f16d052U, 0xad7d5351U,
};

static uint32_t crc32c_bytes(uint32_t crc, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p++);
        n--;
    }
    return c32;
}

static bool crc32c_hw_available(void)
{
    return __builtin_cpu_supports("sse4.2");
}
#endif

uint32_t raft_crc32c(uint32_t crc, const uint8_t *data, size_t size)
{
    crc = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc32c_hw_available())
        return ~crc32c_hw(crc, data, size);
#endif
    return ~crc32c_bytes(crc, data, size);
}

/* ---- little-endian helpers ---- */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

enum { CODEC_VERSION = 1, CONFIG_HEADER_BYTES = 4 };

_Static_assert(RAFT_CONFIG_ENCODED_BYTES_MAX == CONFIG_HEADER_BYTES + 8 * RAFT_MEMBERS_MAX,
               "config size bound matches its layout");

/* ---- configuration ---- */

static bool config_valid(const struct raft_config *c)
{
    if (c->voter_count < 1 || c->voter_count > RAFT_MEMBERS_MAX ||
        c->learner_count > RAFT_MEMBERS_MAX || c->voter_count + c->learner_count > RAFT_MEMBERS_MAX)
        return false;
    raft_id all[RAFT_MEMBERS_MAX];
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->voter_count; i++)
        all[n++] = c->voters[i];
    for (uint32_t i = 0; i < c->learner_count; i++)
        all[n++] = c->learners[i];
    for (uint32_t i = 0; i < n; i++) {
        if (all[i] == 0)
            return false;
        for (uint32_t j = 0; j < i; j++)
            if (all[i] == all[j])
                return false;
    }
    return true;
}

int raft_config_encode(const struct raft_config *c, uint8_t *buf)
{
    if (c == NULL || !config_valid(c))
        return EHR_EINVAL;
    buf[0] = CODEC_VERSION;
    buf[1] = (uint8_t)c->voter_count;
    buf[2] = (uint8_t)c->learner_count;
    buf[3] = 0;
    uint8_t *p = buf + CONFIG_HEADER_BYTES;
    for (uint32_t i = 0; i < c->voter_count; i++, p += 8)
        put64(p, c->voters[i]);
    for (uint32_t i = 0; i < c->learner_count; i++, p += 8)
        put64(p, c->learners[i]);
    return (int)(p - buf);
}

int raft_config_decode(const uint8_t *buf, size_t size, struct raft_config *out)
{
    if (buf == NULL || size < CONFIG_HEADER_BYTES)
        return EHR_EINVAL;
    if (buf[0] != CODEC_VERSION)
        return EHR_EVERSION;
    uint32_t voters = buf[1], learners = buf[2];
    if (buf[3] != 0 || voters + learners > RAFT_MEMBERS_MAX)
        return EHR_EINVAL;
    if (size != CONFIG_HEADER_BYTES + 8 * (size_t)(voters + learners))
        return EHR_EINVAL;
    struct raft_config c;
    memset(&c, 0, sizeof c);
    c.voter_count = voters;
    c.learner_count = learners;
    const uint8_t *p = buf + CONFIG_HEADER_BYTES;
    for (uint32_t i = 0; i < voters; i++, p += 8)
        c.voters[i] = get64(p);
    for (uint32_t i = 0; i < learners; i++, p += 8)
        c.learners[i] = get64(p);
    if (!config_valid(&c))
        return EHR_EINVAL;
    *out = c;
    return 0;
}

/* ---- records ---- */

static int check_crc(const uint8_t *buf, size_t body)
{
    return raft_crc32c(0, buf, body) == get32(buf + body) ? 0 : EHR_ECORRUPT;
}

int raft_entry_record_encode(const struct raft_entry *e, uint8_t *buf, size_t cap)
{
    if (e == NULL || e->size > RAFT_PROPOSAL_BYTES_MAX || (e->size > 0 && e->data == NULL))
        return EHR_EINVAL;
    if (e->type != RAFT_ENTRY_NORMAL && e->type != RAFT_ENTRY_EMPTY && e->type != RAFT_ENTRY_CONFIG)
        return EHR_EINVAL;
    size_t need = RAFT_ENTRY_RECORD_HEADER_BYTES + (size_t)e->size + RAFT_RECORD_CRC_BYTES;
    if (cap < need)
        return EHR_ETOOBIG;
    buf[0] = CODEC_VERSION;
    buf[1] = (uint8_t)e->type;
    put64(buf + 2, e->term);
    put64(buf + 10, e->index);
    put32(buf + 18, e->size);
    if (e->size > 0)
        memcpy(buf + RAFT_ENTRY_RECORD_HEADER_BYTES, e->data, e->size);
    size_t body = RAFT_ENTRY_RECORD_HEADER_BYTES + e->size;
    put32(buf + body, raft_crc32c(0, buf, body));
    return (int)need;
}

int raft_entry_record_decode(const uint8_t *buf, size_t size, struct raft_entry *out)
{
    if (buf == NULL || size < RAFT_ENTRY_RECORD_HEADER_BYTES + RAFT_RECORD_CRC_BYTES)
        return EHR_ETRUNCATED;
    uint32_t data_size = get32(buf + 18);
    if (data_size > RAFT_PROPOSAL_BYTES_MAX)
        return EHR_ECORRUPT;
    size_t body = RAFT_ENTRY_RECORD_HEADER_BYTES + (size_t)data_size;
    if (size < body + RAFT_RECORD_CRC_BYTES)
        return EHR_ETRUNCATED;
    if (size > body + RAFT_RECORD_CRC_BYTES)
        return EHR_EINVAL;
    if (check_crc(buf, body) != 0)
        return EHR_ECORRUPT;
    if (buf[0] != CODEC_VERSION)
        return EHR_EVERSION;
    uint8_t type = buf[1];
    if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_EMPTY && type != RAFT_ENTRY_CONFIG)
        return EHR_EINVAL;
    out->type = (enum raft_entry_type)type;
    out->term = get64(buf + 2);
    out->index = get64(buf + 10);
    out->size = data_size;
    out->data = data_size > 0 ? buf + RAFT_ENTRY_RECORD_HEADER_BYTES : NULL;
    return 0;
}

/*
 * A hard state: [version u8][term u64][vote u64][commit u64][crc u32], or,
 * for a restored node (restore_term non-zero), version
 * HARD_STATE_RESTORED_VERSION with [restore_term u64] before the crc. The
 * common form is the first one, byte for byte as before restore_term
 * existed, so a node that was never restored writes what an older version
 * reads.
 */
enum {
    HARD_STATE_RESTORED_VERSION = 2,
    HARD_STATE_BODY_BYTES = 1 + 8 + 8 + 8,
    HARD_STATE_PLAIN_BYTES = HARD_STATE_BODY_BYTES + RAFT_RECORD_CRC_BYTES
};
_Static_assert(HARD_STATE_PLAIN_BYTES + 8 == RAFT_HARD_STATE_RECORD_BYTES,
               "the restored form adds restore_term");

int raft_hard_state_record_encode(const struct raft_hard_state *hs, uint8_t *buf, size_t cap)
{
    if (hs == NULL)
        return EHR_EINVAL;
    size_t body = HARD_STATE_BODY_BYTES + (hs->restore_term != 0 ? 8 : 0);
    if (cap < body + RAFT_RECORD_CRC_BYTES)
        return EHR_ETOOBIG;
    buf[0] = hs->restore_term != 0 ? HARD_STATE_RESTORED_VERSION : CODEC_VERSION;
    put64(buf + 1, hs->term);
    put64(buf + 9, hs->vote);
    put64(buf + 17, hs->commit);
    if (hs->restore_term != 0)
        put64(buf + 25, hs->restore_term);
    put32(buf + body, raft_crc32c(0, buf, body));
    return (int)(body + RAFT_RECORD_CRC_BYTES);
}

int raft_hard_state_record_decode(const uint8_t *buf, size_t size, struct raft_hard_state *out)
{
    if (buf == NULL || size < HARD_STATE_PLAIN_BYTES)
        return EHR_ETRUNCATED;
    if (size > RAFT_HARD_STATE_RECORD_BYTES)
        return EHR_EINVAL;
    size_t body = size - RAFT_RECORD_CRC_BYTES;
    if (check_crc(buf, body) != 0)
        return EHR_ECORRUPT;
    bool restored = buf[0] == HARD_STATE_RESTORED_VERSION;
    if (!restored && buf[0] != CODEC_VERSION)
        return EHR_EVERSION;
    if (body != HARD_STATE_BODY_BYTES + (restored ? 8 : 0))
        return EHR_EINVAL; /* a length its version does not have */
    out->term = get64(buf + 1);
    out->vote = get64(buf + 9);
    out->commit = get64(buf + 17);
    out->restore_term = restored ? get64(buf + 25) : 0;
    if (restored && out->restore_term == 0)
        return EHR_EINVAL; /* the restored form always carries one */
    return 0;
}

int raft_snapshot_meta_record_encode(const struct raft_snapshot_meta *m, uint8_t *buf, size_t cap)
{
    if (m == NULL)
        return EHR_EINVAL;
    if (cap < RAFT_SNAPSHOT_META_RECORD_BYTES)
        return EHR_ETOOBIG;
    buf[0] = CODEC_VERSION;
    put64(buf + 1, m->index);
    put64(buf + 9, m->term);
    int conf = raft_config_encode(&m->config, buf + 17);
    if (conf < 0)
        return conf;
    size_t body = 17 + (size_t)conf;
    put32(buf + body, raft_crc32c(0, buf, body));
    return (int)(body + RAFT_RECORD_CRC_BYTES);
}

int raft_snapshot_meta_record_decode(const uint8_t *buf, size_t size,
                                     struct raft_snapshot_meta *out)
{
    if (buf == NULL || size < 17 + CONFIG_HEADER_BYTES + RAFT_RECORD_CRC_BYTES)
        return EHR_ETRUNCATED;
    if (size > RAFT_SNAPSHOT_META_RECORD_BYTES)
        return EHR_EINVAL;
    size_t body = size - RAFT_RECORD_CRC_BYTES;
    if (check_crc(buf, body) != 0)
        return EHR_ECORRUPT;
    if (buf[0] != CODEC_VERSION)
        return EHR_EVERSION;
    struct raft_snapshot_meta m;
    memset(&m, 0, sizeof m);
    m.index = get64(buf + 1);
    m.term = get64(buf + 9);
    int err = raft_config_decode(buf + 17, body - 17, &m.config);
    if (err != 0)
        return err;
    *out = m;
    return 0;
}
