#!/usr/bin/perl

# scripts/vetting-review on its own, against a real redis-server and no
# gateway: an empty fleet; Redis unreachable (every command fails, clearly,
# and claims nothing); an app that is not suspended (Redis's own message,
# nothing printed as done); values that could forge lines or move the
# terminal, shown escaped; audit and notifications as JSON lines; the
# password only from VETTING_REDIS_PASSWORD, never on a command line;
# --reviewer required before Redis is asked anything.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX ();
use Test::More;
use Test::Vetting;

###############################################################################

my $t = Test::Vetting->new;

plan(skip_all => 'redis-cli not found') if !$t->has_program('redis-cli');

my $review = "$FindBin::Bin/../scripts/vetting-review";
my $json = JSON::PP->new->utf8;
my @stderr;

$t->run_redis;
$t->run_redis(name => 'locked', requirepass => 'locked-pass',
    users => [['reviewer', 'reviewer-pass']]);

# a redis-cli first on PATH that records its command line, whether it got
# a password in its environment, and every command line running meanwhile

my ($real) = grep { -x } map { "$_/redis-cli" } split /:/, $ENV{PATH};
my $calls = $t->dir . '/redis-cli.calls';
my $ps = $t->dir . '/ps.log';

$t->write_file('bin/redis-cli', <<"EOF");
#!/bin/sh
printf 'argv %s\\n' "\$*" >> '$calls'
printf 'auth %s\\n' "\${REDISCLI_AUTH:+set}" >> '$calls'
ps -eo args >> '$ps' 2>/dev/null
exec '$real' "\$@"
EOF
chmod 0755, $t->dir . '/bin/redis-cli';

my $header = qr/^APP\s+SCOPE\s+STATE\s+SINCE\s+REVOKED-BEFORE\s+RULE\n/;

###############################################################################

# an empty fleet

my ($rc, $out, $err) = review('list');
is($rc, 0, 'empty fleet: list exits 0');
like($out, qr/\A$header\z/, 'empty fleet: the header only');
is($err, '', 'empty fleet: nothing on stderr');

for my $cmd (qw(audit notifications)) {
    ($rc, $out, $err) = review($cmd);
    is($rc, 0, "empty fleet: $cmd exits 0");
    is($out, '', "empty fleet: $cmd prints nothing");
}

###############################################################################

# Redis unreachable: every command fails and claims nothing

my $nothing = $t->port('nothing');

for my $cmd (['list'], ['show', 'some-app'],
    ['reinstate', 'some-app', '--reviewer', 'alice'],
    ['confirm', 'some-app', '--reviewer', 'alice', '--revoke', '--notify'],
    ['audit'], ['notifications'])
{
    ($rc, $out, $err) = review({ port => $nothing }, @$cmd);
    is($rc, 1, "unreachable: $cmd->[0] exits 1");
    is($out, '', "unreachable: $cmd->[0] prints nothing on stdout");
    like($err, qr/^vetting-review: Could not connect to Redis at 127\.0\.0\.1:$nothing\b/,
        "unreachable: $cmd->[0] says so");
}

###############################################################################

# an app that is not suspended: Redis's message, nothing done

for my $cmd (['reinstate', 'ghost-app', '--reviewer', 'alice'],
    ['confirm', 'ghost-app', '--reviewer', 'alice', '--revoke', '--notify',
        '--delist'])
{
    ($rc, $out, $err) = review(@$cmd);
    is($rc, 1, "not suspended: $cmd->[0] exits 1");
    is($out, '', "not suspended: $cmd->[0] claims nothing");
    is($err, qq{vetting-review: no suspension of "ghost-app" in scope "*"\n},
        "not suspended: $cmd->[0] prints Redis's message");
}

($rc, $out, $err) = review('reinstate', 'ghost-app', 'tenant-a', '--reviewer',
    'alice');
is($err, qq{vetting-review: no suspension of "ghost-app" in scope "tenant-a"\n},
    'not suspended: the scope named');

is($t->redis('EXISTS', 'vt:{app:ghost-app}:history', 'vt:notify',
    'vt:delisted', 'vt:{app:ghost-app}:revoked:*'), 0,
    'not suspended: no history, notification, revocation or delisting');

($rc, $out, $err) = review('show', 'ghost-app');
is($rc, 1, 'show of an unknown app exits 1');
is($out, '', 'show of an unknown app prints nothing on stdout');
like($err, qr/no suspension of "ghost-app" in scope "\*", and no history/,
    'show of an unknown app says so');

###############################################################################

# a suspension (seeded as vt_count would leave it); its evidence holds a
# request path that tries to forge a line and clear the terminal

my $since = 1764700000000;
my $evil = "3 write events, last: DELETE /fhir/r4/x\n  state      reinstated\e[2J";

$t->redis('HSET', 'vt:{app:seed-app}:susp:*', app => 'seed-app',
    scope => '*', state => 'suspended', since => $since,
    rule => 'write threshold=3 window=1h action=block', event => 'write',
    count => 3, threshold => 3, window => 3600000, gateway => 'gw1',
    policy => 'p', evidence => $evil);
$t->redis('HSET', 'vt:index', 'seed-app *', "$since 0 suspended write",
    'another-app tenant-a', "0 $since revoked -");
$t->redis('SADD', 'vt:{app:seed-app}:authorized', 'm1',
    qq{m"2\\\n\t\xc3\xa9});

($rc, $out, $err) = review('list');
is($rc, 0, 'list: exit 0');
like($out, qr/\A$header
    another-app\s+tenant-a\s+revoked\s+-\s+2025-12-02T18:26:40Z\s+-\n
    seed-app\s+\*\s+suspended\s+2025-12-02T18:26:40Z\s+-\s+write\n\z/x,
    'list: both entries, sorted, with dates');

($rc, $out, $err) = review('show', 'seed-app');
is($rc, 0, 'show: exit 0');
like($out, qr/^== suspension of "seed-app" in scope "\*"$/m, 'show: title');
like($out, qr/^  since\s+$since \(2025-12-02T18:26:40Z\)$/m, 'show: since');
like($out, qr/^  evidence\s+3 write events, last: DELETE \S+\\n  state {6}reinstated\\e\[2J$/m,
    'show: evidence escaped');
is(scalar(() = $out =~ /^\s+state\s/mg), 1, 'show: no forged line');
unlike($out, qr/\e/, 'show: no escape character reaches the terminal');
like($out, qr/^== members who ever authorized the app: 2$/m, 'show: members');

($rc, $out, $err) = review('confirm', 'seed-app', '--reviewer', 'bob',
    '--note', 'a "quoted" note', '--revoke', '--notify', '--delist');
is($rc, 0, 'confirm: exit 0');
is($out, <<'EOF', 'confirm: what was done');
confirmed the block of "seed-app" in scope "*"
credentials issued before 2025-12-02T18:26:40Z are revoked
notifications queued: 2 members, 1 for the tenant's contacts
delisted from the gallery
EOF
is($err, '', 'confirm: nothing on stderr');

($rc, $out) = review('confirm', 'seed-app', '--reviewer', 'bob', '--notify');
is($rc, 0, 'second confirm: exit 0');
like($out, qr/^notifications: queued by an earlier confirmation, not again$/m,
    'second confirm: nobody notified again');

# notifications: one JSON object a line, newest first

($rc, $out, $err) = review('notifications');
is($rc, 0, 'notifications: exit 0');
my @notes = json_lines($out);
is(scalar @notes, 3, 'notifications: 3 valid JSON lines');
is($notes[0]{to}, 'tenant-contacts', 'notifications: newest first');
is($notes[0]{members}, '2', 'notifications: the tenant contacts told of 2');
is_deeply([sort map { $_->{member} } @notes[1, 2]],
    [sort 'm1', qq{m"2\\\n\t\x{e9}}],
    'notifications: quotes, backslash, newline, tab, UTF-8 intact');
ok(!grep({ !$_->{stream_id} } @notes), 'notifications: stream ids');
ok(stream_id_cmp($notes[0]{stream_id}, $notes[2]{stream_id}) > 0,
    'notifications: ids descending');

($rc, $out) = review('notifications', 1);
is(scalar(json_lines($out)), 1, 'notifications 1: one line');

($rc, $out, $err) = review('reinstate', 'seed-app', '--reviewer', 'carol',
    '--note', 'false positive');
is($rc, 0, 'reinstate: exit 0');
is($out, qq{reinstated "seed-app" in scope "*"\n}, 'reinstate: said so');

($rc, $out) = review('show', 'seed-app');
is($rc, 0, 'show after reinstatement: exit 0');
like($out, qr/^== no suspension of "seed-app" in scope "\*"$/m,
    'show after reinstatement: no suspension');
is(scalar(() = $out =~ /^  \{.*"action":"(?:confirmed|reinstated)"/mg), 3,
    'show after reinstatement: two confirmations and the reinstatement');

###############################################################################

# audit: the AuditEvent of each entry, one a line, newest first

my @events = (
    { resourceType => 'AuditEvent', id => 'ev-1', outcome => '4' },
    { resourceType => 'AuditEvent', id => 'ev-2', outcome => '4',
      entity => [{ name => qq{DELETE /x?"q"\\ \n} }] },
);

$t->redis('XADD', 'vt:audit', '*', event => $json->encode($events[0]),
    id => 'ev-1');
$t->redis('XADD', 'vt:audit', '*', event => $json->encode($events[1]),
    id => 'ev-2');
$t->redis('XADD', 'vt:audit', '*', event => qq({"resourceType":\n"AuditEvent",\r\n"id":"ev-3"}),
    id => 'ev-3');

($rc, $out, $err) = review('audit');
is($rc, 0, 'audit: exit 0');
my @audit = json_lines($out);
is(scalar @audit, 3, 'audit: 3 valid JSON lines');
is(join(' ', map { $_->{id} } @audit), 'ev-3 ev-2 ev-1', 'audit: newest first');
is_deeply($audit[1], $events[1], 'audit: the AuditEvent as written');

($rc, $out) = review('audit', 2);
is(scalar(json_lines($out)), 2, 'audit 2: two lines');

$t->redis('XADD', 'vt:audit', '*', event => 'not json', id => 'ev-4');
($rc, $out, $err) = review('audit');
is($rc, 1, 'audit with an entry that is not an AuditEvent: exit 1');
is(scalar(json_lines($out)), 3, 'audit: the valid ones still printed');
like($err, qr/^vetting-review: audit entry \d+-\d+ is not an AuditEvent; skipped$/m,
    'audit: the entry named');

###############################################################################

# the password: VETTING_REDIS_PASSWORD only, through the environment

my %locked = (port => $t->port('locked'));

($rc, $out, $err) = review(\%locked, 'list');
is($rc, 1, 'no password: exit 1');
is($out, '', 'no password: nothing printed');
like($err, qr/wants a password: set VETTING_REDIS_PASSWORD/,
    'no password: says which variable');

($rc, $out, $err) = review({ %locked, env => { REDISCLI_AUTH => 'locked-pass' } },
    'list');
is($rc, 1, 'REDISCLI_AUTH of the caller is not used');

($rc, $out, $err) = review({ %locked,
    env => { VETTING_REDIS_PASSWORD => 'wrong' } }, 'list');
is($rc, 1, 'wrong password: exit 1');
like($err, qr/refused the user or password/, 'wrong password: says so');

unlink $calls, $ps;

($rc, $out, $err) = review({ %locked,
    env => { VETTING_REDIS_PASSWORD => 'locked-pass' } }, 'list');
is($rc, 0, 'VETTING_REDIS_PASSWORD: list works') or diag($err);
like($out, qr/\A$header\z/, 'VETTING_REDIS_PASSWORD: the header');

my $argv = $t->read_file('redis-cli.calls') // '';
like($argv, qr/^argv .*HGETALL/m, 'redis-cli ran');
like($argv, qr/^auth set$/m, 'redis-cli got the password in its environment');
unlike($argv, qr/locked-pass/, 'the password is on no redis-cli command line');

SKIP: {
    my $snap = $t->read_file('ps.log') // '';
    skip('ps not available', 2) if $snap !~ /redis-cli/;

    like($snap, qr/vetting-review/, 'ps saw the review running');
    unlike($snap, qr/locked-pass/, 'ps shows the password nowhere');
}

($rc, $out, $err) = review({ %locked,
    env => { VETTING_REDIS_PASSWORD => 'reviewer-pass' } },
    '--user', 'reviewer', 'list');
is($rc, 0, 'ACL user and its password: list works') or diag($err);

($rc, $out, $err) = review({ %locked, env => {
    VETTING_REDIS_USER => 'reviewer',
    VETTING_REDIS_PASSWORD => 'reviewer-pass' } }, 'list');
is($rc, 0, 'VETTING_REDIS_USER: list works') or diag($err);

# a refused AUTH: redis-cli would go on as the default user; never

$t->redis('HSET', 'vt:{app:other-app}:susp:*', since => $since,
    event => 'write');

($rc, $out, $err) = review({ env => { VETTING_REDIS_PASSWORD => 'x' } },
    '--user', 'nobody', 'reinstate', 'other-app', '--reviewer', 'alice');
is($rc, 1, 'refused AUTH: exit 1');
is($out, '', 'refused AUTH: nothing claimed');
like($err, qr/refused the user or password/, 'refused AUTH: says so');
is($t->redis('EXISTS', 'vt:{app:other-app}:susp:*'), 1,
    'refused AUTH: not reinstated as the default user');

unlink $calls;

for my $pass (['-a', 'locked-pass'], ['--pass', 'locked-pass']) {
    ($rc, $out, $err) = review(\%locked, @$pass, 'list');
    is($rc, 2, "$pass->[0] on the command line refused");
    like($err, qr/VETTING_REDIS_PASSWORD only/, "$pass->[0]: says where");
}

###############################################################################

# --reviewer: required, and checked before Redis is asked anything

for my $cmd (qw(reinstate confirm)) {
    ($rc, $out, $err) = review($cmd, 'other-app');
    is($rc, 2, "$cmd without --reviewer: exit 2");
    like($err, qr/--reviewer NAME is required/, "$cmd without --reviewer: why");

    ($rc, $out, $err) = review($cmd, 'other-app', '--reviewer', '');
    like($err, qr/--reviewer NAME is required/, "$cmd --reviewer '': refused");

    ($rc, $out, $err) = review($cmd, 'other-app', '--reviewer');
    is($rc, 2, "$cmd --reviewer without a name: exit 2");
    like($err, qr/--reviewer needs a value/, "$cmd --reviewer: needs a value");

    ($rc, $out, $err) = review($cmd, 'other-app', '--reviewer', '--note',
        'x');
    like($err, qr/--reviewer needs a name, not "--note"/,
        "$cmd --reviewer --note: not taken as a name");

    ($rc, $out, $err) = review($cmd, '--reviewer', 'alice');
    like($err, qr/APP is missing/, "$cmd without APP: says so");
}

ok(!-e $calls, 'redis-cli never ran for them');
is($t->redis('EXISTS', 'vt:{app:other-app}:susp:*'), 1,
    'still suspended');

# usage errors

($rc, $out, $err) = review('-p');
is($rc, 2, '-p without a port: exit 2');
like($err, qr/-p needs a value/, '-p without a port: says so');

($rc, $out, $err) = review('frobnicate');
is($rc, 2, 'unknown command: exit 2');

($rc, $out, $err) = review('notifications', 'many');
is($rc, 2, 'a count that is not one: exit 2');

unlike(join('', @stderr), qr/unbound variable|line \d+:/,
    'no shell error in any run');

$t->done_testing;

###############################################################################

# review([{ port => ..., env => {...} },] ARGS...): (exit code, stdout,
# stderr) of one run, with the recording redis-cli first on PATH
sub review {
    my $o = ref $_[0] eq 'HASH' ? shift : {};
    my @args = @_;
    my $dir = $t->dir;
    my $port = $o->{port} // $t->port('redis');

    my $pid = fork // die "fork: $!\n";

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$dir/review.out";
        open STDERR, '>', "$dir/review.err";
        delete @ENV{grep { /^VETTING_REDIS_|^REDISCLI_AUTH$/ } keys %ENV};
        %ENV = (%ENV, %{ $o->{env} // {} });
        $ENV{PATH} = "$dir/bin:$ENV{PATH}";
        exec($review, '-p', $port, @args) or print STDERR "exec: $!\n";
        POSIX::_exit(127);
    }

    waitpid($pid, 0);
    my $rc = $? >> 8;
    my $err = $t->read_file('review.err') // '';

    push @stderr, $err;

    return ($rc, $t->read_file('review.out') // '', $err);
}


# the objects of JSON lines; a line that is not JSON fails the test
sub json_lines {
    my ($text) = @_;
    my @objects;

    for my $line (split /\n/, $text) {
        my $o = eval { $json->decode($line) };
        ok(0, "not a JSON object: $line") if ref $o ne 'HASH';
        push @objects, $o if ref $o eq 'HASH';
    }

    return @objects;
}


sub stream_id_cmp {
    my ($a1, $a2) = split /-/, $_[0];
    my ($b1, $b2) = split /-/, $_[1];

    return $a1 <=> $b1 || $a2 <=> $b2;
}

###############################################################################
