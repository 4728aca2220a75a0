/*
 * ehrd_test_hooks.h - the test build of the daemon, ehrd-test: node/ehrd.c
 * compiled with EHR_TEST_HOOKS and this file, so that the multi-process
 * tests can inject faults through the environment. The production ehrd is
 * built without either and reads no test switch (a CTest checks its bytes).
 */
#ifndef EHR_EHRD_TEST_HOOKS_H
#define EHR_EHRD_TEST_HOOKS_H

#include "node.h"

/*
 * Fill FAULTS from the environment: EHR_TEST_DIGEST_FAULT_HEIGHT=H makes the
 * node publish a wrong state digest at height H; EHR_TEST_FORGE_HEIGHT=H
 * makes it, as leader, propose block H with its first transaction re-signed
 * by a key of the leader's choosing, never the signer's (a member's node
 * forging what another signed); EHR_TEST_CAPSULE_DELAY_MS=MS holds each
 * GetCapsuleFragment job MS more on the worker pool;
 * EHR_TEST_BLOB_SERVE_DELAY_MS=MS each job reading a blob piece for a peer.
 * Unset: no fault.
 */
void ehrd_test_faults_read(struct node_test_faults *faults);

#endif /* EHR_EHRD_TEST_HOOKS_H */
