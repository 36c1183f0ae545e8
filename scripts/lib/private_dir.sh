# private_dir DIR USER: create DIR empty, mode 0700 and owned by USER
# before anything is put in it.  Without -p, so that a path that exists
# (one another local user made under /var/tmp, say, or a symbolic link) is
# an error instead of being used.  Sourced by scripts/demo.sh.
private_dir() {
    local dir=$1 user=$2
    mkdir -m 0700 -- "$dir" || { echo "private_dir: cannot create $dir (does it exist?)" >&2; return 1; }
    chown -- "$user:$user" "$dir"
}
