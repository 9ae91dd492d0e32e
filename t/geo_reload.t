#!/usr/bin/perl

# The country database replaced on disk, then "nginx -s reload" (SIGHUP):
# after the reload the new data answers on every worker, nothing stale is
# served, and no request fails while it happens, with clients calling
# all along.  A database replaced by a rename and one overwritten in
# place (the same inode: a trap for modules that map the file itself)
# both work, and neither changes nor crashes the running workers before
# the reload.  A missing, truncated, empty or corrupt database fails
# "nginx -t" with a message naming the file, and a reload with it is
# refused while the old configuration keeps serving.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Time::HiRes qw(sleep time);

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;

###############################################################################

my $t = Test::Vetting->new;

my $mkmmdb = "$FindBin::Bin/../scripts/mkmmdb.pl";
my $db = $t->dir . '/geo.mmdb';

# two databases that disagree on two networks and agree on two more;
# the second has the other layout and is an IPv6 database, so that a
# reload also changes the layout found and the size of the file

my $v1 = mkmmdb('v1.mmdb', [qw(--layout geoip2 --ip-version 4)],
    qw(203.0.113.0/24=DE 198.51.100.0/24=US 192.0.2.0/24=US));
my $v2 = mkmmdb('v2.mmdb', [qw(--layout flat --ip-version 6)],
    qw(203.0.113.0/24=US 198.51.100.0/24=DE 192.0.2.0/24=US
    2001:db8::/32=US));

# the addresses the clients use: two change country, two never change
# answer (192.0.2.7 is US in both, 10.0.0.1 is in neither)

my %may = (
    '203.0.113.7'  => { 200 => 1, 403 => 1 },
    '198.51.100.7' => { 200 => 1, 403 => 1 },
    '192.0.2.7'    => { 200 => 1 },
    '10.0.0.1'     => { 200 => 1 },
);

install($v1);

$t->write_file('www/patient.json', '{"resourceType":"Patient","id":"1"}');

my $conf = <<'EOF';
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    log_format geo 't=$http_x_test_id status=$status country=$vetting_country';
    access_log %%PREFIX%%/geo.log geo if=$http_x_test_id;

    vetting_geoip %%DIR%%/geo.mmdb;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;

        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        location /fhir/r4 {
            vetting_endpoint fhir;
            root %%DIR%%/www;
            try_files /patient.json =404;
        }
    }
}
EOF

$t->write_conf($conf);
$t->run_nginx;

my $port = $t->port('nginx');
my $seq = 0;

# the [emerg] lines of the reloads refused on purpose below
$t->allow_log(qr/\[emerg\] .*vetting_geoip "\Q$db\E"/);

is(answers('203.0.113.7'), '403 DE', 'v1: 203.0.113.7 is DE');
is(answers('198.51.100.7'), '200 US', 'v1: 198.51.100.7 is US');

# clients that call until told to stop, bounded in count and time

my @loads = map { "load$_" } 1 .. 3;

for my $i (0 .. $#loads) {
    $t->run_daemon(sub { load($i) }, name => $loads[$i]);
}

sleep 0.3;

###############################################################################

# a new database renamed into place

install($v2);

is(answers('203.0.113.7'), '403 DE',
    'renamed: before the reload the workers keep their database');

ok($t->reload, 'renamed: reload');
is(answers('203.0.113.7'), '200 US', 'renamed: 203.0.113.7 is now US');
is(answers('198.51.100.7'), '403 DE', 'renamed: 198.51.100.7 is now DE');
is(answers('2001:db8::7'), '200 US', 'renamed: the IPv6 network answers');

# the old database written over the same file

my $inode = (stat $db)[1];
overwrite($db, $v1);
is((stat $db)[1], $inode, 'overwritten: the same file');

is(answers('203.0.113.7'), '200 US',
    'overwritten: before the reload the workers keep their database');

ok($t->reload, 'overwritten: reload');
is(answers('203.0.113.7'), '403 DE', 'overwritten: 203.0.113.7 is DE again');
is(answers('198.51.100.7'), '200 US', 'overwritten: 198.51.100.7 is US again');
is(answers('2001:db8::7'), '200 -',
    'overwritten: the IPv6 network is gone (IPv4 database)');

###############################################################################

# broken databases: nginx -t names the file, a reload is refused, the
# old configuration serves on

my $half = substr($v2, 0, int(length($v2) / 2));

my @broken = (
    ['truncated', sub { overwrite($db, $half) },
        qr/MMDB_open\(\) failed: .* invalid metadata/],
    ['empty', sub { overwrite($db, '') }, qr/the file is empty/],
    ['corrupt', sub { overwrite($db, corrupt($v2)) },
        qr/search tree is corrupt/],
    ['not a database', sub { overwrite($db, "not a database\n" x 100) },
        qr/invalid metadata/],
    ['missing', sub { unlink $db or die "unlink $db: $!\n" },
        qr/open\(\) failed \(2: No such file or directory\)/],
);

for my $case (@broken) {
    my ($name, $break, $why) = @$case;

    $break->();

    my ($rc, $out) = $t->nginx_t($conf);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\] .*vetting_geoip "\Q$db\E": /,
        "$name: nginx -t names the file");
    like($out, $why, "$name: nginx -t says why");

    my @before = $t->nginx_pids;
    is($t->reload, 0, "$name: reload refused");
    is_deeply([$t->nginx_pids], \@before, "$name: the old workers serve on");
    is(answers('203.0.113.7'), '403 DE', "$name: the old database answers");

    install($v1);
}

# a good database again

install($v2);

ok($t->reload, 'repaired: reload');
is(answers('203.0.113.7'), '200 US', 'repaired: the new database answers');

###############################################################################

# what the clients saw all along

$t->write_file('load.stop', '');

my (%seen, @wrong, $total);

for my $name (@loads) {
    ok($t->wait_for_log("daemon-$name.log", qr/^done \d+$/, 30),
        "$name finished");

    for my $line (split /\n/, $t->read_file("daemon-$name.log") // '') {
        next if $line =~ /^done /;

        my ($addr, $status, $error) = split / /, $line, 3;
        $total++;
        $seen{$addr}{$status}++;

        push @wrong, $line
            if !$may{$addr} || !$may{$addr}{$status} || $error ne '-';
    }

    $t->stop_daemon($name);
}

cmp_ok($total, '>=', 200, 'the clients sent requests during the reloads');
is(scalar @wrong, 0, 'no request failed or got an answer of neither database')
    or diag(join "\n", @wrong[0 .. ($#wrong > 9 ? 9 : $#wrong)]);
ok($seen{'203.0.113.7'}{403} && $seen{'203.0.113.7'}{200},
    'the clients saw both databases answer');

###############################################################################

$t->done_testing;

###############################################################################

sub mkmmdb {
    my ($file, $options, @networks) = @_;

    my $path = $t->dir . "/$file";

    system($^X, $mkmmdb, @$options, '--out', $path, @networks) == 0
        or die "mkmmdb.pl $file failed\n";

    return $t->read_file($file);
}


# a new file renamed over the database
sub install {
    my ($data) = @_;

    my $tmp = "$db.new";

    open my $fh, '>:raw', $tmp or die "open $tmp: $!\n";
    print $fh $data;
    close $fh or die "close $tmp: $!\n";

    rename $tmp, $db or die "rename $tmp: $!\n";
}


# new content written into the same file, which shrinks or grows
sub overwrite {
    my ($path, $data) = @_;

    open my $fh, '+<:raw', $path or die "open $path: $!\n";
    print $fh $data;
    truncate $fh, length $data or die "truncate $path: $!\n";
    close $fh or die "close $path: $!\n";
}


# every record of the search tree pointing past the end of the file
sub corrupt {
    my ($data) = @_;

    substr($data, 0, 96) = "\xff" x 96;

    return $data;
}


# the answers of 20 requests from an address, "<statuses> <countries>",
# each list sorted and without repeats; both workers answer some
sub answers {
    my ($addr) = @_;

    my (%status, %country);

    for (1 .. 20) {
        my $id = 'a' . ++$seq;
        my $r = http_get($port, '/fhir/r4/Patient/1',
            'X-Forwarded-For' => $addr, 'X-Test-Id' => $id);

        $status{ $r->status // 'none' } = 1;
        $country{ access_entry($t, $id, 'geo.log')->{country} || '-' } = 1;
    }

    return join(',', sort keys %status) . ' '
        . join(',', sort keys %country);
}


# one client: "<address> <status> <error or ->" per request, then "done N"
sub load {
    my ($i) = @_;

    my @addrs = sort keys %may;
    my $stop = $t->dir . '/load.stop';
    my $deadline = time + 120;
    my $n = 0;

    $| = 1;

    while ($n < 20000 && time < $deadline && !-e $stop) {
        my $addr = $addrs[($n + $i) % @addrs];
        my $r = http_get($port, "/fhir/r4/Patient/$n",
            'X-Forwarded-For' => $addr);

        my $error = $r->{error} ? 'error'
            : $r->{timed_out} ? 'timeout'
            : $r->{incomplete} ? 'incomplete' : '-';

        print "$addr ", $r->status // 'none', " $error\n";
        $n++;
    }

    print "done $n\n";
}

###############################################################################
