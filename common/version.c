/*
 * version.c - what ehrd --version and ehrctl --version print: the release
 * and the commit, from the header cmake/version.cmake writes at build time.
 * Only this file includes it, so a new commit recompiles one file.
 */
#include "common.h"
#include "ehr_version.h"

const char *ehr_version(void)
{
    return EHR_VERSION_TEXT " (commit " EHR_VERSION_COMMIT ")";
}
