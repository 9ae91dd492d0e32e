#!/usr/bin/perl

# Tests for the test harness itself (t/lib/Test/Vetting.pm), with the
# stock nginx and no module: two nginx instances, a fake upstream that
# answers one byte at a time, a burst, reloads, Redis, nginx -t, daemons,
# cleanup after die, and the end checks.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Redis qw(resp_array resp_bulk resp_int);
use POSIX ();
use Time::HiRes qw(time);

###############################################################################

my $t = Test::Vetting->new(module => 0);

$t->run_upstream('up', \&upstream);
$t->write_file('static/file.txt', "static\n");
$t->run_nginx(conf => conf('v1'));

my $port = $t->port('nginx');
my ($master, @workers) = $t->nginx_pids;

ok($master, 'master pid known');
is(scalar @workers, 2, 'two workers');

# the workers may run as nobody: files in the temp dir stay readable

my $r = http_get($port, '/static/file.txt');
is($r->{status}, 200, 'static file');
is($r->{body}, "static\n", 'static file body');

$r = http_req($port, 'HEAD', '/static/file.txt');
is($r->{status}, 200, 'head');
is($r->{body}, '', 'head has no body');
is($r->header('Content-Length'), 7, 'head length');

$r = http($port, [["GET /static/file.txt HT", 0.1], "TP/1.0\r\n\r\n"]);
is($r->{body}, "static\n", 'request sent in pieces');

# the upstream writes every response one byte at a time

$r = http_get($port, '/up/a?x=1', 'X-Test' => 'yes', 'X-Secret' => 's3');
is($r->{status}, 200, 'proxied');
is($r->{body}, "GET /up/a body=\n", 'proxied body');
is($r->{headers}{'x-up'}, 'yes', 'upstream header');

my @seen = $t->upstream_requests('up');
is(scalar @seen, 1, 'upstream saw one request');
is($seen[0]{path}, '/up/a', 'upstream path');
is($seen[0]{query}, 'x=1', 'upstream query');
is($seen[0]{headers}{'x-test'}, 'yes', 'upstream got header');
ok(!exists $seen[0]{headers}{'x-secret'}, 'stripped header never arrived');

$r = http_get($port, '/up/nolength');
is($r->header('transfer-encoding'), 'chunked', 'chunked to client');
is($r->{body}, "GET /up/nolength body=\n", 'dechunked body');
ok(!$r->{incomplete}, 'chunked body complete');

my $binary = "a\0b\r\n\xff" x 3;
$r = http_post($port, '/up/post', $binary);
is($r->{status}, 200, 'post');
is(($t->upstream_requests('up'))[-1]{body}, $binary, 'binary body logged');

$r = http($t->port('up'), "POST /direct HTTP/1.1\r\nHost: x\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n");
is($r->{body}, "POST /direct body=abcde\n", 'upstream reads chunked body');

my $start = time;
$r = http_get($port, '/up/stall');
is($r->{status}, 504, 'stalled upstream times out');
ok(time - $start < 5, 'stall shorter than handler');

$r = http_get($port, '/up/cut');
is($r->{status}, 200, 'cut response status');
ok($r->{incomplete}, 'cut response incomplete');

# 20 requests at once

my @burst = http_burst($port, [("GET / HTTP/1.0\r\n\r\n") x 20]);
my %workers = map { $_ => 1 } @workers;

is(scalar(grep { ($_->{status} // 0) == 200 } @burst), 20, 'burst all 200');
is(scalar(grep { $_->{body} =~ /^v1 (\d+)$/ && $workers{$1} } @burst), 20,
    'burst answered by the workers');

# a second gateway

$t->run_nginx(name => 'gw2', conf => <<'EOF');
%%BASE%%

http {
    server {
        listen 127.0.0.1:%%PORT:gw2%%;

        location / {
            proxy_pass http://127.0.0.1:%%PORT:nginx%%;
        }
    }
}
EOF

my @gw2 = $t->nginx_pids('gw2');
is(scalar @gw2, 2, 'gw2 master and one worker');
like(http_get($t->port('gw2'), '/via-gw2')->{body}, qr/^v1 \d+$/,
    'gw2 proxies to the first');
ok($t->wait_for_log('gw2/access.log', qr{GET /via-gw2}, 5),
    'gw2 access log');
is(scalar(grep { m{/via-gw2} } $t->access_log('nginx')), 1,
    'first access log');
like($t->error_log('gw2'), qr/\[notice\].*start worker process/,
    'gw2 error log');
isnt($t->prefix('gw2'), $t->prefix('nginx'), 'own prefix');

# reload

ok($t->reload(conf => conf('v2')), 'reload');

my ($master2, @workers2) = $t->nginx_pids;
my %old = map { $_ => 1 } @workers;

is($master2, $master, 'same master');
is(scalar @workers2, 2, 'two new workers');
ok(!grep({ $old{$_} } @workers2), 'old workers gone');
like(http_get($port, '/')->{body}, qr/^v2 \d+$/, 'new config');

$t->allow_log(qr/unknown directive "bogus_directive"/);

is($t->reload(conf => "bogus_directive;\n" . conf('v3')), 0,
    'bad reload refused');
is_deeply([$t->nginx_pids], [$master2, @workers2], 'workers kept');
like(http_get($port, '/')->{body}, qr/^v2 /, 'old config kept');

# Redis

$t->run_redis(requirepass => 'pw', users => [['app', 'secret']]);

is($t->redis('PING'), 'PONG', 'redis ping');
is($t->redis('SET', "k\r\n\0", $binary), 'OK', 'redis set');
is($t->redis('GET', "k\r\n\0"), $binary, 'redis binary get');
is($t->redis('GET', 'missing'), undef, 'redis nil');
is($t->redis('INCRBY', 'n', 5), 5, 'redis integer');
$t->redis('RPUSH', 'l', 'a', 'b');
is_deeply($t->redis('LRANGE', 'l', 0, -1), ['a', 'b'], 'redis array');

my $e = $t->redis('NOSUCHCOMMAND');
ok(is_redis_error($e), 'redis error object');
like("$e", qr/^ERR unknown command/, 'redis error message');

my $c = $t->redis_client;
my @tx = $c->pipeline(['MULTI'], ['SET', 's', 'x'], ['INCR', 's'], ['EXEC']);
is($tx[3][0], 'OK', 'exec reply');
ok(is_redis_error($tx[3][1]), 'error inside exec');
$c->close;

is($t->redis_client(auth => ['app', 'secret'])->cmd('GET', 's'), 'x',
    'acl user');
ok(is_redis_error(Test::Vetting::Redis->new(port => $t->port('redis'))
    ->cmd('GET', 's')), 'no auth refused');

$t->kill_redis;
ok(!eval { $t->redis('PING'); 1 }, 'killed redis unreachable');

$t->restart_redis;
is($t->redis('PING'), 'PONG', 'restarted redis');
is($t->redis('GET', 's'), undef, 'restarted redis is empty');

# a fake Redis: one big reply, written in pieces

$t->run_tcp('fake-redis', sub {
    my ($sock) = @_;

    my $conn = Test::Vetting::Redis->from_socket($sock);

    while (my $argv = $conn->read_command) {
        my $reply = $argv->[0] eq 'GET' ? resp_bulk('x' x 20000)
            : resp_array(resp_bulk($argv->[0]), resp_int(scalar @$argv));
        syswrite $sock, $_ for unpack '(a4096)*', $reply;
    }
});

$c = Test::Vetting::Redis->new(port => $t->port('fake-redis'));
is(length $c->cmd('GET', 'big'), 20000, 'fake redis big reply');
is_deeply($c->cmd('HELLO', 'a', 'b'), ['HELLO', 3], 'fake redis array');
$c->close;

# nginx -t

my ($rc, $out) = $t->nginx_t("%%BASE%%\nbogus_directive;\n"
    . "http {\n}\n");
isnt($rc, 0, 'broken config fails');
like($out, qr/unknown directive "bogus_directive"/, 'nginx -t message');

($rc, $out) = $t->nginx_t(conf('v9'));
is($rc, 0, 'good config passes');

# a daemon

$t->run_daemon([$^X, '-MIO::Socket::INET', '-e', <<'EOF', $t->port('hi')],
my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$ARGV[0]",
    Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $l->accept) { print $c "hi\n"; close $c }
EOF
    name => 'hi', port => 'hi');

is(http($t->port('hi'), '')->{raw}, "hi\n", 'daemon answers');
$t->stop_daemon('hi');
ok(http($t->port('hi'), '')->{error}, 'daemon stopped');

# log helpers

my $found = $t->scan_log(join "\n",
    '2024/01/01 00:00:00 [alert] 1#1: something',
    '2024/01/01 00:00:00 [alert] 1#1: *3 open socket #9 left in connection 4',
    '2024/01/01 00:00:00 [alert] 1#1: worker process 7 exited on signal 11',
    '==7==ERROR: AddressSanitizer: heap-use-after-free',
    '2024/01/01 00:00:00 [emerg] 1#1: unknown directive "bogus_directive"',
    '2024/01/01 00:00:00 [error] 1#1: upstream timed out');

is(scalar @{ $found->{alerts} }, 3, 'scan finds alerts');
is(scalar @{ $found->{crashes} }, 1, 'scan finds crashes');
is(scalar @{ $found->{sanitizer} }, 1, 'scan finds sanitizer');

$t->write_file('audit.jsonl', qq({"a":1}\n{"b":"\xc3\xa9"}\n{"partial));
is_deeply([$t->audit_events('audit.jsonl')], [{a => 1}, {b => "\x{e9}"}],
    'audit events');

# no process outlives a test file that dies

my $child = run_perl(<<'EOF');
my $t = Test::Vetting->new(module => 0);
$t->run_upstream('u', { status => 204 });
$t->run_redis;
$t->run_nginx(conf => "%%BASE%%\nhttp {\n server {\n"
    . "  listen 127.0.0.1:%%PORT:nginx%%;\n }\n}\n");
print "pids @{[ $t->nginx_pids, values %{ $t->pids } ]}\n";
print "dir ", $t->dir, "\n";
die "deliberate\n";
EOF

my ($pids) = $child =~ /^pids (.+)$/m;
my ($dir) = $child =~ /^dir (.+)$/m;
my %uniq;
my @pids = grep { !$uniq{$_}++ } split ' ', $pids // '';

is(scalar @pids, 4, 'child test started 4 processes');
is(scalar(grep { kill 0, $_ } @pids), 0, 'none left after die');
ok($dir && !-e $dir, 'temp dir removed');

# the module gate

$child = run_perl('Test::Vetting->new; print "not reached\n";',
    VETTING_MODULE => '/nonexistent.so');
like($child, qr/^not ok 1 - vetting module is built/m, 'missing module fails');
unlike($child, qr/not reached/, 'missing module stops the file');

$child = run_perl('Test::Vetting->new; print "not reached\n";',
    VETTING_MODULE => '/nonexistent.so', VETTING_ALLOW_SKIP => 1);
like($child, qr/^1\.\.0 # SKIP/m, 'missing module skips when allowed');

$t->done_testing;

###############################################################################

sub conf {
    my ($version) = @_;

    return <<"EOF";
%%BASE%%
worker_processes 2;

http {
    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        location / {
            return 200 "$version \$pid";
        }

        location /static/ {
            root %%DIR%%;
        }

        location /up/ {
            proxy_pass http://127.0.0.1:%%PORT:up%%;
            proxy_set_header X-Secret "";
            proxy_read_timeout 1s;
        }
    }
}
EOF
}


sub upstream {
    my ($r) = @_;

    my $text = "$r->{method} $r->{path} body=$r->{body}\n";

    return sub { sleep 5 } if $r->{path} eq '/up/stall';

    if ($r->{path} eq '/up/cut') {
        return sub {
            my ($sock) = @_;
            syswrite $sock, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                . "\r\npartial";
        };
    }

    if ($r->{path} eq '/up/nolength') {
        return pieces("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n$text",
            1, 0.002);
    }

    return pieces(http_response(headers => { 'X-Up' => 'yes' },
        body => $text), 1, 0.001);
}


# runs perl code with the harness loaded; stdout and stderr together
sub run_perl {
    my ($code, %env) = @_;

    my $pid = open(my $fh, '-|') // die "fork: $!\n";

    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        delete @ENV{qw(VETTING_ALLOW_SKIP TEST_VETTING_LEAVE)};
        @ENV{ keys %env } = values %env;
        exec($^X, "-I$FindBin::Bin/lib", '-MTest::More', '-MTest::Vetting',
            '-e', $code) or print "exec: $!\n";
        POSIX::_exit(127);
    }

    local $/;
    my $out = <$fh> // '';
    close $fh;

    return $out;
}

###############################################################################
