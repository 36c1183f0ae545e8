# The demo's cluster directory (scripts/demo.sh) is created empty, mode
# 0700 and owned by postgres before anything is put in it, and a path that
# already exists is refused rather than used (issue 13, low item).
use strict;
use warnings;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

# chown to postgres: as root, or as postgres itself (how the suite runs)
my $me = (getpwuid($>))[0];
plan skip_all => 'needs root or postgres (chown)' if $> != 0 && $me ne 'postgres';
my $lib = "$FindBin::RealBin/../scripts/lib/private_dir.sh";
my $base = tempdir('demo-dir-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub run_private_dir
{
	my ($dir) = @_;
	return system('bash', '-c', '. "$1"; private_dir "$2" postgres', 'x', $lib, $dir) >> 8;
}

is(run_private_dir("$base/new"), 0, 'a new directory is created');
my @st = stat("$base/new");
is(sprintf('%04o', $st[2] & 07777), '0700', 'mode 0700');
is((getpwuid($st[4]))[0], 'postgres', 'owned by postgres');
opendir(my $dh, "$base/new") or die;
is(scalar(grep { !/^\.\.?$/ } readdir $dh), 0, 'and empty');

mkdir("$base/taken", 0777) or die;
isnt(run_private_dir("$base/taken"), 0, 'an existing directory is refused');
symlink("$base/new", "$base/link") or die;
isnt(run_private_dir("$base/link"), 0, 'a symbolic link is refused');
is(sprintf('%04o', (stat("$base/taken"))[2] & 07777), sprintf('%04o', 0777 & ~umask), 'the existing directory was not taken over');

# demo.sh uses it, before it copies anything into the directory
open(my $fh, '<', "$FindBin::RealBin/../scripts/demo.sh") or die;
my $demo = do { local $/; <$fh> };
like($demo, qr/private_dir "\$demo" postgres\ncp -r/, 'scripts/demo.sh creates its directory with private_dir, then copies');
unlike($demo, qr/mkdir -p "\$demo"/, 'and no longer with mkdir -p');
done_testing();
