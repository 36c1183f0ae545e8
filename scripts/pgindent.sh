#!/usr/bin/env bash
# Keep the C in PostgreSQL's layout: run pg_bsd_indent (Debian package
# pg-bsd-indent) with the options of PostgreSQL 15's src/tools/pgindent.
#
#   scripts/pgindent.sh                  reformat every C file of the tree
#   scripts/pgindent.sh FILE...          reformat these files
#   scripts/pgindent.sh --check [FILE...]
#                                        change nothing; list the files that
#                                        would change and exit 1 if any would
#   scripts/pgindent.sh --typedefs       print the typedef list used
#
# The files: extension/ worker/ broker/ tools/ and bench/*.c.  Typedefs:
# typedefs.list (this code base's, kept in the tree: regenerate it with
# --update-typedefs after adding one; the paper broker is a program of its
# own whose lower-case typedefs such as "order" would garble variables of
# the extension, so broker/ has its own list, broker/typedefs.list) plus
# those of PostgreSQL's server
# headers and of the libraries the code includes (curl, OpenSSL,
# libmicrohttpd, libwebsockets, the C library), read from the installed
# headers with ctags, since PostgreSQL's own typedefs.list is not packaged.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
indent=${PG_BSD_INDENT:-pg_bsd_indent}
pg_config=${PG_CONFIG:-pg_config}
# src/tools/pgindent/pgindent of PostgreSQL 15
opts="-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4"

ours_typedefs() {
	ctags -x --kinds-C=t --languages=C --langmap=C:.c.h -R \
		"$@" 2>/dev/null | awk '{print $1}' | sort -u
}

mode=fix
case "${1:-}" in
	--check) mode=check; shift ;;
	--typedefs) mode=typedefs; shift ;;
	--update-typedefs)
		ours_typedefs extension worker tools bench > typedefs.list
		ours_typedefs broker > broker/typedefs.list
		exit 0 ;;
esac

command -v "$indent" >/dev/null ||
	{ echo "pgindent.sh: $indent not found (apt-get install pg-bsd-indent)" >&2; exit 2; }
command -v ctags >/dev/null ||
	{ echo "pgindent.sh: ctags not found (apt-get install universal-ctags)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

headers=("$("$pg_config" --includedir-server)")
for h in /usr/include/curl /usr/include/openssl /usr/include/microhttpd.h \
	/usr/include/libwebsockets.h /usr/include/libwebsockets \
	/usr/include/stdio.h /usr/include/stdlib.h /usr/include/x86_64-linux-gnu/bits/types \
	/usr/include/x86_64-linux-gnu/sys/types.h /usr/include/pthread.h; do
	[ -e "$h" ] && headers+=("$h")
done
{
	ctags -x --kinds-C=t --languages=C --langmap=C:.c.h -R "${headers[@]}" 2>/dev/null | awk '{print $1}'
	# used as types but not found by ctags in the headers above
	printf '%s\n' size_t ssize_t off_t pid_t uid_t gid_t mode_t time_t FILE bool \
		int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t uintptr_t
} | grep -E '^[A-Za-z_][A-Za-z0-9_]*$' | sort -u > "$tmp/libs"
sort -u typedefs.list "$tmp/libs" > "$tmp/typedefs"
sort -u broker/typedefs.list "$tmp/libs" > "$tmp/typedefs.broker"

if [ "$mode" = typedefs ]; then
	cat "$tmp/typedefs"
	exit 0
fi

if [ $# -gt 0 ]; then
	files=("$@")
else
	mapfile -t files < <(git ls-files 'extension/*.[ch]' 'worker/*.[ch]' \
		'broker/*.[ch]' 'tools/*.[ch]' 'bench/*.c')
fi

changed=0
for f in "${files[@]}"; do
	out="$tmp/out.c"
	in="$tmp/in.c"
	# pgindent's pre-processing: // comments become /* */; protect "=-"
	sed -E 's|^([ \t]*)//(.*)$|\1/* \2 */|; s/=- /-= /g' "$f" > "$in"
	# shellcheck disable=SC2086
	list="$tmp/typedefs"
	case "$f" in broker/*) list="$tmp/typedefs.broker" ;; esac
	"$indent" $opts -U"$list" "$in" "$out" 2>"$tmp/err" ||
		{ echo "pgindent.sh: $f: $(cat "$tmp/err")" >&2; changed=1; continue; }
	# pgindent's post-processing: one space before '*' in a function's
	# return type; no trailing blanks
	sed -i -E 's/^([A-Za-z_][^[:space:]]*)[[:space:]]+\*$/\1 */; s/[ \t]+$//' "$out"
	if ! cmp -s "$f" "$out"; then
		if [ "$mode" = check ]; then
			echo "$f"
			changed=1
		else
			cp "$out" "$f"
			echo "reformatted $f"
		fi
	fi
done
[ "$mode" = check ] && exit $changed
exit 0
