/*
 * error.c -- sn_strerror() and sn_err_name(), generated from SN_ERRNO_MAP.
 *
 * System errors are passed as -errno and described by strerror(); the
 * project's own codes live in a separate range (below -1000) so the two never
 * collide.
 */
#include <errno.h>
#include <string.h>

#include "sense/sense.h"

const char *sn_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define SN__ERR_MSG(name, value, msg) case value: return msg;
    SN_ERRNO_MAP(SN__ERR_MSG)
#undef SN__ERR_MSG
    default: break;
    }
    if (code < 0 && code > -1000)
        return strerror(-code);
    return "unknown error";
}

const char *sn_err_name(int code)
{
    switch (code) {
    case 0: return "OK";
#define SN__ERR_NAME(name, value, msg) case value: return #name;
    SN_ERRNO_MAP(SN__ERR_NAME)
#undef SN__ERR_NAME
    case -ENOENT: return "ENOENT";
    case -ENOMEM: return "ENOMEM";
    case -EINVAL: return "EINVAL";
    case -EIO: return "EIO";
    case -EACCES: return "EACCES";
    case -ENOSPC: return "ENOSPC";
    default: return "EUNKNOWN";
    }
}
