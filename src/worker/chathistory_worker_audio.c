
/*
 * Removing a session's audio directory, audio_storage_path/{session_id}/.
 * The name is a strictly validated UUID, and the tree is walked with
 * openat(O_NOFOLLOW) and unlinkat(): a symlink is removed, never followed,
 * so nothing outside the storage directory can be touched.
 */


#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chathistory_worker.h"


#define CHW_AUDIO_MAX_DEPTH  8


static int chw_audio_remove_at(int dirfd, const char *name, int depth,
    long *files);
static int chw_audio_empty_dir(int fd, int depth, long *files);


/* 8-4-4-4-12 hexadecimal digits, lower or upper case */
int
chw_uuid_valid(const char *s)
{
    int  i;

    for (i = 0; i < CHW_UUID_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }

        } else if (!isxdigit((unsigned char) s[i])) {
            return 0;
        }
    }

    return s[CHW_UUID_LEN] == '\0';
}


/* CHW_OK also when there is nothing to remove; *files counts regular files */
int
chw_audio_remove(const char *root, const char *session_id, long *files)
{
    int  fd, rc, err;

    if (!chw_uuid_valid(session_id)) {
        chw_log(CHW_LOG_ERROR, "refusing to remove audio: not a UUID",
                "session", session_id, NULL);
        return CHW_ERROR;
    }

    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1) {
        if (errno == ENOENT) {
            return CHW_OK;
        }

        chw_log(CHW_LOG_ERROR, "cannot open audio_storage_path",
                "path", root, "error", strerror(errno), NULL);
        return CHW_ERROR;
    }

    rc = chw_audio_remove_at(fd, session_id, 0, files);
    err = errno;
    close(fd);

    if (rc != CHW_OK) {
        chw_log(CHW_LOG_ERROR, "cannot remove the audio of a session",
                "path", root, "session", session_id,
                "error", strerror(err), NULL);
    }

    return rc;
}


/* removes name in dirfd: a file or symlink is unlinked, a directory emptied */
static int
chw_audio_remove_at(int dirfd, const char *name, int depth, long *files)
{
    int          fd, rc;
    struct stat  st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        return errno == ENOENT ? CHW_OK : CHW_ERROR;
    }

    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
            return CHW_ERROR;
        }

        if (S_ISREG(st.st_mode)) {
            (*files)++;
        }

        return CHW_OK;
    }

    if (depth >= CHW_AUDIO_MAX_DEPTH) {
        errno = ELOOP;
        return CHW_ERROR;
    }

    fd = openat(dirfd, name,
                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1) {
        return errno == ENOENT ? CHW_OK : CHW_ERROR;
    }

    rc = chw_audio_empty_dir(fd, depth + 1, files);

    if (rc == CHW_OK && unlinkat(dirfd, name, AT_REMOVEDIR) != 0
        && errno != ENOENT)
    {
        rc = CHW_ERROR;
    }

    return rc;
}


/* removes everything in the directory fd, and closes fd */
static int
chw_audio_empty_dir(int fd, int depth, long *files)
{
    int             rc;
    DIR            *d;
    struct dirent  *de;

    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return CHW_ERROR;
    }

    rc = CHW_OK;

    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }

        if (chw_audio_remove_at(dirfd(d), de->d_name, depth, files)
            != CHW_OK)
        {
            rc = CHW_ERROR;
            break;
        }
    }

    closedir(d);

    return rc;
}
