/* outputs.h - the output files of ndcl-run and ndcl-train: checked before
 * any work, written into a staging directory beside their targets and
 * renamed into place only once the whole run has succeeded, removed on
 * failure and on SIGINT, SIGTERM or SIGHUP. */
#ifndef NDCL_TOOLS_OUTPUTS_H
#define NDCL_TOOLS_OUTPUTS_H

#include <stdbool.h>
#include <stddef.h>

#include "exit_codes.h"

enum { OUTPUTS_MAX = 8, OUTPUTS_MAX_INPUTS = 8 };

typedef struct outputs {
    int n_in, n_out;
    struct {
        const char *flag, *path;
    } in[OUTPUTS_MAX_INPUTS];
    struct {
        const char *flag, *path;
        bool dir;   /* a directory (--save), swapped in whole */
        char *tmp;  /* its staging name, once outputs_begin has run */
        char *real; /* the target with its directory resolved */
    } out[OUTPUTS_MAX];
    /* Where an input may be replaced by an output (the layer file and
     * --save-state of ndcl-run, which chain steps): -1 when none. */
    int in_may_be_out_in, in_may_be_out_out;
    int n_stage;
    char *stage[OUTPUTS_MAX]; /* the staging directories, one per target directory */
} outputs;

/* An empty set. */
void outputs_init(outputs *o);

/* An input file, by the option that named it: an output must not be it. */
void outputs_input(outputs *o, const char *flag, const char *path);

/* An output, by the option that named it; dir for a directory. Returns its
 * index. */
int outputs_add(outputs *o, const char *flag, const char *path, bool dir);

/* Lets input in (its index in the order of outputs_input) and output out be
 * one file. */
void outputs_allow_same(outputs *o, int in, int out);

/* Checks every output before any work: a new name in an existing writable
 * directory, or an existing regular file with one link (for a directory
 * output: an existing directory holding only the names in keep), never a
 * device, FIFO, socket, symlink or hard link, never an input's file, never
 * named twice. Returns 0, or 2 with the reason (naming the options and
 * paths) in err. */
int outputs_check(outputs *o, const char *const *keep, char *err, size_t errsize);

/* Creates the staging directories (beside the targets) and arms the signal
 * handlers that remove them. Returns 0, or 2 with the reason in err. */
int outputs_begin(outputs *o, char *err, size_t errsize);

/* Where output i is to be written (inside the staging directory). */
const char *outputs_tmp(const outputs *o, int i);

/* Renames every staged output over its target (a directory output is
 * exchanged with the existing one, whose files in keep are then removed)
 * and removes the staging directories. Returns 0, or 2 with the reason in
 * err (the outputs not yet renamed are then discarded).
 *
 * Test hook: with NDCL_TEST_STALL_COMMIT=S in the environment it says so on
 * stderr and waits S seconds before renaming, everything staged, so that a
 * test can interrupt it there. */
int outputs_commit(outputs *o, const char *const *keep, char *err, size_t errsize);

/* Removes whatever was staged and frees the set; the targets are untouched.
 * Safe to call after outputs_commit and more than once. */
void outputs_discard(outputs *o);

#endif
