/* layer.h - the layer handle every kind shares: parameters on the device,
 * the cached folded weights of evaluation mode, the statistics, the list of
 * workspaces, the options, and the table of functions through which
 * layer.c reaches a kind without knowing it. A kind's descriptor and its
 * own workspaces are behind l->priv, in the kind's header (fastdeconv.h,
 * linear.h, channel.h); its kernels and products are primitives. */
#ifndef NDCL_LAYER_H
#define NDCL_LAYER_H

#include "layers/group.h"
#include "primitives/primitives.h"
#include "runtime/runtime.h"

/* One parameter or buffer, by its state_dict name. */
typedef struct ndcl_param {
    const char *name;
    cl_mem mem;
    int ndim;
    size_t shape[NDCL_MAX_DIMS];
    size_t count;
    ndcl_param_cell *cell; /* its version, shared with the views of it */
} ndcl_param;

#define NDCL_MAX_PARAMS 6
#define NDCL_MAX_WORKSPACES 32
/* The workspaces every layer registers (ndcl_layer_alloc); each kind adds
 * its own and asserts at compile time that the sum fits. */
#define NDCL_LAYER_COMMON_WORKSPACES 10

/* The record of the last forward that ndcl_layer_backward needs besides
 * the buffers it kept. */
typedef struct ndcl_saved {
    bool valid; /* a forward succeeded and no backward or release followed */
    bool stats; /* it used batch statistics: the gradient flows through them */
    ndcl_mode mode;
    bool frozen; /* conv: a training step on the running statistics */
    int xdim, ydim;
    size_t xshape[NDCL_MAX_DIMS], yshape[NDCL_MAX_DIMS];
} ndcl_saved;

/* What a kind provides (pocl's struct pocl_device_ops pattern): each kind's
 * file fills one table; layer.c validates the public arguments and calls
 * through it. */
typedef struct ndcl_layer_ops {
    ndcl_layer_kind kind;
    const char *name;
    bool has_counter; /* conv2d: freeze counter; channel: num_batches_tracked */
    bool stats_every; /* NDCL_LAYER_STATS_EVERY applies */
    /* One forward step; x belongs to the layer's context, *y follows the
     * output convention (the caller destroys a tensor created here when
     * the step fails). */
    ndcl_status (*forward)(ndcl_layer *l, ndcl_mode mode, const ndcl_tensor *x,
                           ndcl_tensor **y);
    /* The backward pass of the last forward (saved valid, dy checked against
     * its output shape); dx, dW, db are NULL when not wanted, else of x's,
     * the weight's and the bias's shapes (dW and db always NULL for a kind
     * without parameters). Nothing the layer keeps for the backward pass is
     * modified, so a failed call can be repeated. */
    ndcl_status (*backward)(ndcl_layer *l, const ndcl_tensor *dy, ndcl_tensor *dx,
                            ndcl_tensor *dW, ndcl_tensor *db);
    /* The kind's own options (NDCL_LAYER_CONV_CHUNK, NDCL_LAYER_CONV_ALGO):
     * *handled set when the option is the kind's, which then checks and
     * applies the value; NULL for a kind without options of its own. */
    ndcl_status (*set_option)(ndcl_layer *l, ndcl_layer_option option, int64_t value,
                              bool *handled);
    ndcl_status (*get_option)(const ndcl_layer *l, ndcl_layer_option option, int64_t *value,
                              bool *handled);
    /* Releases what the kind's state holds besides its registered
     * workspaces (the convolution's algorithm states); may be NULL. */
    void (*release)(ndcl_layer *l);
    /* Whether a forward in this mode uses the batch's statistics (and so,
     * in a group, makes collectives: group.h). */
    bool (*batch_stats)(const ndcl_layer *l, ndcl_mode mode);
    /* In a group: the values of the largest forward collective after the
     * header and of the backward's one, from the configuration alone (a
     * rank that failed early must still send the right count). */
    void (*sync_counts)(const ndcl_layer *l, size_t *fwd, size_t *bw);
    /* The weight in the block basis (primitives.h), which the fold of W',
     * b' (ndcl_layer_fold_into, ndcl_layer_eval_fold) and its adjoint use;
     * NULL for a kind without weights. */
    ndcl_fold_geom (*fold_geom)(const ndcl_layer *l);
} ndcl_layer_ops;

/* One workspace of the layer: saved ones belong to the backward pass and
 * go with ndcl_layer_release_saved; every one goes with the layer and
 * counts in ndcl_layer_workspace_bytes. */
typedef struct ndcl_workspace {
    ndcl_scratch *s;
    bool saved;
} ndcl_workspace;

struct ndcl_layer {
    ndcl_context *ctx;
    const ndcl_layer_ops *ops;
    void *priv; /* the kind's own state: descriptor, workspaces (its header) */
    int block;  /* effective block B */

    ndcl_param params[NDCL_MAX_PARAMS];
    int n_params;
    int64_t counter;

    /* Folded W', b' of evaluation mode, valid while fold_valid holds and
     * every parameter's version is still the one it was folded from. */
    ndcl_scratch w_fold, b_fold;
    bool fold_valid;
    uint64_t fold_versions[NDCL_MAX_PARAMS];

    /* Statistics of the last training forward (the Newton-Schulz iterates
     * in ns_saved) and the covariance's workspace. */
    ndcl_scratch mean, cov, deconv, ns_saved;
    cl_mem bad; /* one int: this step's statistics are not finite */

    /* Kept for the backward pass: the forward's record, its input (a copy
     * in xsave, or the caller's buffer itself, retained, in x_borrowed when
     * the caller promised not to change it) and a copy of its weight. The
     * buffers above (mean, deconv, ns_saved, w_fold) and the kind's own
     * hold the rest until the next forward. */
    ndcl_saved saved;
    ndcl_scratch xsave, wsave;
    cl_mem x_borrowed;

    /* Every workspace above and the kind's, registered once
     * (ndcl_layer_add_workspace): destroy, release_saved and
     * workspace_bytes go through this list. */
    ndcl_workspace ws[NDCL_MAX_WORKSPACES];
    int n_ws;

    /* Options (ndcl_layer_set_option). */
    bool borrow_input;
    /* Amortised statistics: the mean and D of every stats_every-th training
     * forward, held for the ones between, which train on them; stats_phase
     * counts the training forwards since the last that computed them (0:
     * the next one does). */
    int64_t stats_every, stats_phase;
    ndcl_scratch held_mean, held_deconv;

    /* The group the layer's statistics are synchronised across (group.h). */
    ndcl_sync sync;
};

/* Whether a forward in this mode makes collectives (a group is attached
 * and the step uses batch statistics). */
bool ndcl_sync_forward_active(const ndcl_layer *l, ndcl_mode mode);

/* The parameter called name, or NULL. */
ndcl_param *ndcl_layer_param(const ndcl_layer *l, const char *name);

/* Allocates and registers a parameter filled with value (identity when
 * eye_n > 0: batch = count / eye_n² identity matrices). */
ndcl_status ndcl_layer_add_param(ndcl_layer *l, const char *name, int ndim,
                                 const size_t *shape, float value, size_t eye_n);

/* Whether W', b' of evaluation mode are folded from the parameters as
 * they are now; ndcl_layer_fold_done records that they just were. */
bool ndcl_layer_fold_current(const ndcl_layer *l);
void ndcl_layer_fold_done(ndcl_layer *l);

/* W', b' into w_fold, b_fold from the parameters and the statistics D,
 * mean, through the kind's fold geometry (without a bias the mean
 * correction still applies, from b = 0, as in the original). */
ndcl_status ndcl_layer_fold_into(ndcl_layer *l, cl_mem D, cl_mem mean);

/* Brings W', b' of evaluation mode up to date with the parameters: folded
 * from the running statistics, whose copies in mean and deconv serve the
 * backward, unless ndcl_layer_fold_current. */
ndcl_status ndcl_layer_eval_fold(ndcl_layer *l);

/* A new layer of the kind ops describes, with no parameters yet and
 * priv_size zeroed bytes of the kind's own state in l->priv. */
ndcl_status ndcl_layer_alloc(ndcl_context *ctx, const ndcl_layer_ops *ops, size_t priv_size,
                             ndcl_layer **out);

/* Registers one of the kind's workspaces (saved: part of the backward
 * pass's state, see ndcl_workspace); at most NDCL_MAX_WORKSPACES in all,
 * which each kind asserts at compile time. */
void ndcl_layer_add_workspace(ndcl_layer *l, ndcl_scratch *s, bool saved);

/* Keeps the forward's input x for the backward pass: copied into xsave,
 * or, with the borrow option, x's buffer retained. */
ndcl_status ndcl_layer_keep_input(ndcl_layer *l, const ndcl_tensor *x);

/* The input ndcl_layer_keep_input kept. */
cl_mem ndcl_layer_kept_input(const ndcl_layer *l);

/* Whether a forward in mode trains on the held statistics of an earlier
 * step (NDCL_LAYER_STATS_EVERY) instead of the batch's. */
bool ndcl_layer_reuses_stats(const ndcl_layer *l, ndcl_mode mode);

/* After a training forward that computed the batch's statistics into mean
 * and deconv: holds a copy of them when the option asks for it. */
ndcl_status ndcl_layer_hold_stats(ndcl_layer *l);

/* Before a forward that reuses them: mean and deconv <- the held
 * statistics (the fold and the backward read them there). */
ndcl_status ndcl_layer_use_held_stats(ndcl_layer *l);

/* Counts a successful training forward towards the next statistics step. */
void ndcl_layer_stats_step_done(ndcl_layer *l, ndcl_mode mode);

/* Records a successful forward for the backward pass. */
void ndcl_layer_save_record(ndcl_layer *l, ndcl_mode mode, bool stats, bool frozen,
                            const ndcl_tensor *x, const ndcl_tensor *y);

/* Resets bad, checks every stat buffer for non-finite values (raising the
 * context flag), and applies the momentum updates, all on the device:
 * a non-finite step leaves every running buffer unchanged. copy selects the
 * first-batch copy of ChannelDeconv. */
typedef struct ndcl_update {
    cl_mem stat, running;
    size_t n;
    bool copy;
    size_t stat_off; /* element offset of the statistic in stat */
} ndcl_update;
ndcl_status ndcl_layer_update_running(ndcl_layer *l, float momentum, const ndcl_update *u,
                                      int nu);

/* Descriptor checks shared by the kinds (block, eps, n_iter, momentum). */
ndcl_status ndcl_check_common(ndcl_context *ctx, int block, float eps, int n_iter,
                              float momentum);

/* The output tensor: *y created with the shape, or checked against it. */
ndcl_status ndcl_output(ndcl_context *ctx, ndcl_tensor **y, int ndim, const size_t *shape);

#endif
