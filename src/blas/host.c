/* host.c - the host BLAS engine: on a CPU device whose memory is the host's
 * (CL_DEVICE_HOST_UNIFIED_MEMORY, as PoCL's), GEMM, strided-batched GEMM and
 * SYRK run in OpenBLAS through CBLAS on the buffers mapped into the host,
 * as native kernels in the order of the context's queue. The one file that
 * calls CBLAS. */
#include <cblas.h>
#include <limits.h>

#include "blas/blas.h"
#include "runtime/runtime.h"

/* Queue order without blocking. A product is three steps on the in-order
 * queue, all enqueued at once: non-blocking maps of its buffers, a native
 * kernel (clEnqueueNativeKernel: a host function the runtime runs in queue
 * order) that calls CBLAS on the mapped addresses, and the unmaps. The maps
 * complete after every command enqueued before them, so the product reads
 * what the kernels before it wrote; the kernels enqueued after the unmaps
 * see what it wrote; and the call returns at once, as with CLBlast, so no
 * ndcl call blocks because the device is a CPU. On PoCL the mapping is the
 * buffer's own memory (no copy; a 300 MB buffer maps in tens of
 * microseconds) and the native kernel runs on one of PoCL's worker
 * threads, from which OpenBLAS spreads the product over its own threads.
 * The addresses travel in the native kernel's argument block, not through
 * its mem_list: PoCL 3.1 writes mem_list's addresses into the wrong slots
 * when it holds more than one buffer (it sorts its copy of the list). */

/* One operand: a row-major rows x cols matrix at element offset off with
 * leading dimension ld, batch of them stride elements apart. */
typedef struct operand {
    cl_mem mem;
    size_t off, rows, cols, ld, stride, batch;
    bool write;
    size_t lo, hi; /* the elements it spans: [lo, hi) */
    float *ptr;    /* its first element, mapped */
} operand;

/* One mapped buffer: operands in the same buffer share one mapping of the
 * union of their spans (mapping overlapping regions for writing is
 * undefined in OpenCL). */
typedef struct mapping {
    cl_mem mem;
    size_t lo, hi;
    bool write;
    char *base;
} mapping;

enum { MAX_OPS = 3 };

typedef struct product {
    ndcl_context *ctx;
    operand op[MAX_OPS];
    int n_ops;
    mapping map[MAX_OPS];
    int n_maps;
} product;

static void add(product *p, cl_mem mem, size_t off, size_t rows, size_t cols, size_t ld,
                size_t stride, size_t batch, bool write)
{
    p->op[p->n_ops++] = (operand){.mem = mem,
                                  .off = off,
                                  .rows = rows,
                                  .cols = cols,
                                  .ld = ld,
                                  .stride = stride,
                                  .batch = batch,
                                  .write = write};
}

/* The span of each operand (the dispatcher has checked that it fits its
 * buffer and is not empty). */
static void spans(product *p)
{
    for (int i = 0; i < p->n_ops; i++) {
        operand *o = &p->op[i];
        o->lo = o->off;
        ndcl_blas_span(o->off, o->rows, o->cols, o->ld, o->stride, o->batch, &o->hi);
    }
}

static void unmap_all(product *p)
{
    for (int i = 0; i < p->n_maps; i++)
        if (p->map[i].base)
            clEnqueueUnmapMemObject(p->ctx->queue, p->map[i].mem, p->map[i].base, 0, NULL,
                                    NULL);
    p->n_maps = 0;
}

/* Enqueues a map of every buffer, once (non-blocking: the addresses are
 * known now and valid from when the maps complete, in queue order), and
 * points each operand at its first element. */
static ndcl_status map_all(product *p)
{
    for (int i = 0; i < p->n_ops; i++) {
        const operand *o = &p->op[i];
        int j = 0;
        while (j < p->n_maps && p->map[j].mem != o->mem)
            j++;
        if (j == p->n_maps) {
            p->map[p->n_maps++] = (mapping){o->mem, o->lo, o->hi, o->write, NULL};
            continue;
        }
        mapping *m = &p->map[j];
        if (o->lo < m->lo) m->lo = o->lo;
        if (o->hi > m->hi) m->hi = o->hi;
        m->write = m->write || o->write;
    }
    for (int j = 0; j < p->n_maps; j++) {
        mapping *m = &p->map[j];
        cl_int err;
        cl_map_flags flags = CL_MAP_READ | (m->write ? CL_MAP_WRITE : 0);
        m->base = clEnqueueMapBuffer(p->ctx->queue, m->mem, CL_FALSE, flags,
                                     m->lo * sizeof(float), (m->hi - m->lo) * sizeof(float),
                                     0, NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            m->base = NULL;
            unmap_all(p);
            return ndcl_fail_cl(p->ctx, "clEnqueueMapBuffer", err);
        }
    }
    for (int i = 0; i < p->n_ops; i++) {
        operand *o = &p->op[i];
        for (int j = 0; j < p->n_maps; j++)
            if (p->map[j].mem == o->mem)
                o->ptr = (float *)p->map[j].base + (o->lo - p->map[j].lo);
    }
    return NDCL_SUCCESS;
}

static ndcl_status unmap_checked(product *p)
{
    ndcl_status s = NDCL_SUCCESS;
    for (int i = 0; i < p->n_maps; i++) {
        cl_int err = clEnqueueUnmapMemObject(p->ctx->queue, p->map[i].mem, p->map[i].base,
                                             0, NULL, NULL);
        if (err != CL_SUCCESS && s == NDCL_SUCCESS)
            s = ndcl_fail_cl(p->ctx, "clEnqueueUnmapMemObject", err);
    }
    p->n_maps = 0;
    return s;
}

enum op_kind { OP_GEMM, OP_SYRK };

/* What the native kernel needs: the mapped operands and the product's
 * sizes (the runtime hands the function its own copy of this block). */
typedef struct job {
    float *a, *b, *c;
    enum op_kind kind;
    bool ta, tb;
    blasint m, n, k, lda, ldb, ldc;
    size_t sa, sb, sc, batch;
    float alpha, beta;
} job;

static enum CBLAS_TRANSPOSE tr(bool t)
{
    return t ? CblasTrans : CblasNoTrans;
}

static void run(void *args)
{
    const job *j = args;
    if (j->kind == OP_SYRK) {
        /* SYRK's n is the job's m, its k the job's k. */
        cblas_ssyrk(CblasRowMajor, CblasUpper, tr(j->ta), j->m, j->k, j->alpha, j->a,
                    j->lda, j->beta, j->c, j->ldc);
        return;
    }
    for (size_t i = 0; i < j->batch; i++)
        cblas_sgemm(CblasRowMajor, tr(j->ta), tr(j->tb), j->m, j->n, j->k, j->alpha,
                    j->a + i * j->sa, j->lda, j->b + i * j->sb, j->ldb, j->beta,
                    j->c + i * j->sc, j->ldc);
}

/* Maps the product's buffers, enqueues the job over them and the unmaps.
 * The operands are p's in the order a, (b,) c. */
static ndcl_status enqueue(product *p, job *j)
{
    spans(p);
    NDCL_TRY(map_all(p));
    j->a = p->op[0].ptr;
    j->b = j->kind == OP_GEMM ? p->op[1].ptr : NULL;
    j->c = p->op[p->n_ops - 1].ptr;
    cl_int err = clEnqueueNativeKernel(p->ctx->queue, run, j, sizeof *j, 0, NULL, NULL, 0,
                                       NULL, NULL);
    ndcl_status s = err == CL_SUCCESS
                        ? NDCL_SUCCESS
                        : ndcl_fail_cl(p->ctx, "clEnqueueNativeKernel(BLAS)", err);
    ndcl_status u = unmap_checked(p);
    return s != NDCL_SUCCESS ? s : u;
}

/* CBLAS takes its sizes as int here (OpenBLAS without 64-bit integers):
 * a product beyond that goes to CLBlast, which takes size_t. */
static bool fits_int(size_t a, size_t b, size_t c, size_t d, size_t e, size_t f)
{
    const size_t max = sizeof(blasint) >= sizeof(size_t) ? SIZE_MAX : (size_t)INT_MAX;
    return a <= max && b <= max && c <= max && d <= max && e <= max && f <= max;
}

static ndcl_status gemm_batched(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n,
                                size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                                size_t sa, cl_mem b, size_t b_off, size_t ldb, size_t sb,
                                float beta, cl_mem c, size_t c_off, size_t ldc, size_t sc,
                                size_t batch)
{
    if (!fits_int(m, n, k, lda, ldb, ldc))
        return ndcl_blas_clblast.gemm_batched(ctx, ta, tb, m, n, k, alpha, a, a_off, lda,
                                              sa, b, b_off, ldb, sb, beta, c, c_off, ldc,
                                              sc, batch);
    product p = {.ctx = ctx};
    add(&p, a, a_off, ta ? k : m, ta ? m : k, lda, sa, batch, false);
    add(&p, b, b_off, tb ? n : k, tb ? k : n, ldb, sb, batch, false);
    add(&p, c, c_off, m, n, ldc, sc, batch, true);
    job j = {.kind = OP_GEMM,
             .ta = ta,
             .tb = tb,
             .m = (blasint)m,
             .n = (blasint)n,
             .k = (blasint)k,
             .lda = (blasint)lda,
             .ldb = (blasint)ldb,
             .ldc = (blasint)ldc,
             .sa = sa,
             .sb = sb,
             .sc = sc,
             .batch = batch,
             .alpha = alpha,
             .beta = beta};
    return enqueue(&p, &j);
}

static ndcl_status gemm(ndcl_context *ctx, bool ta, bool tb, size_t m, size_t n, size_t k,
                        float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                        size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                        size_t ldc)
{
    return gemm_batched(ctx, ta, tb, m, n, k, alpha, a, a_off, lda, 0, b, b_off, ldb, 0,
                        beta, c, c_off, ldc, 0, 1);
}

static ndcl_status syrk(ndcl_context *ctx, bool trans, size_t n, size_t k, float alpha,
                        cl_mem a, size_t a_off, size_t lda, float beta, cl_mem c,
                        size_t c_off, size_t ldc)
{
    if (!fits_int(n, k, lda, ldc, 0, 0))
        return ndcl_blas_clblast.syrk(ctx, trans, n, k, alpha, a, a_off, lda, beta, c,
                                      c_off, ldc);
    product p = {.ctx = ctx};
    add(&p, a, a_off, trans ? k : n, trans ? n : k, lda, 0, 1, false);
    add(&p, c, c_off, n, n, ldc, 0, 1, true);
    job j = {.kind = OP_SYRK,
             .ta = trans,
             .m = (blasint)n,
             .k = (blasint)k,
             .lda = (blasint)lda,
             .ldc = (blasint)ldc,
             .batch = 1,
             .alpha = alpha,
             .beta = beta};
    return enqueue(&p, &j);
}

bool ndcl_blas_host_fits(ndcl_context *ctx)
{
    cl_bool unified = CL_FALSE;
    cl_device_exec_capabilities caps = 0;
    if (ctx->info.type != NDCL_DEVICE_CPU) return false;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified,
                        &unified, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(ctx->device, CL_DEVICE_EXECUTION_CAPABILITIES, sizeof caps, &caps,
                        NULL) != CL_SUCCESS)
        return false;
    return unified == CL_TRUE && (caps & CL_EXEC_NATIVE_KERNEL);
}

const ndcl_blas_engine ndcl_blas_host = {
    .name = "openblas",
    .gemm = gemm,
    .gemm_batched = gemm_batched,
    .syrk = syrk,
};
