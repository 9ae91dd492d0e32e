package Test::Vetting;

=head1 NAME

Test::Vetting - nginx-tests style harness for ngx_vetting_module

=head1 SYNOPSIS

    use strict;
    use warnings;

    use FindBin;
    use lib "$FindBin::Bin/lib";

    use Test::More;
    use Test::Vetting;

    my $t = Test::Vetting->new;          # fails (or skips) without module
    $t->run_redis;
    $t->run_upstream('fhir', sub { { status => 200, body => '{}' } });

    $t->write_conf(<<'EOF');
    %%BASE%%
    worker_processes 2;

    http {
        server {
            listen 127.0.0.1:%%PORT:nginx%%;
            location / { proxy_pass http://127.0.0.1:%%PORT:fhir%%; }
        }
    }
    EOF
    $t->run_nginx;

    my $r = http_get($t->port('nginx'), '/fhir/r4/Patient/1');
    is($r->{status}, 200, 'read passes');

    $t->done_testing;                    # end checks, then done_testing

=head1 API

=head2 Object, files, ports

    Test::Vetting->new(%o)   module => 0 for stock nginx without the
                             module. With the module wanted (default) and
                             absent: one failing test and exit, or
                             plan skip_all when VETTING_ALLOW_SKIP is set.
    $t->dir                  the temp dir (removed at the end unless
                             TEST_VETTING_LEAVE=1); world-writable when
                             run as root, since workers run as nobody
    $t->has_module           whether the .so exists ($ENV{VETTING_MODULE},
                             default <repo>/build/ngx_http_vetting_module.so)
    $t->module_path, $t->nginx_binary ($ENV{TEST_NGINX_BINARY})
    $t->has_program($name)   whether $name is on PATH
    $t->port($name)          a free loopback port, stable per name; taken
                             below the ephemeral range (see _free_port)
    $t->write_file($name, $content)   relative to dir; returns the path
    $t->read_file($name)     content, or undef when missing
    $t->log_level($level)    error_log level of %%BASE%% (default info)
    $t->worker_user($user)   adds "user $user;" to %%BASE%%

=head2 Configuration

    $t->write_conf($text [, $instance])   writes <prefix>/nginx.conf
    $t->expand($text [, $instance])       the expansion only

Placeholders: %%MODULE%% (absolute .so path), %%DIR%% (the temp dir),
%%PREFIX%% (the instance's prefix), %%PORT:name%%, %%BASE%% and
%%HTTP%%. %%BASE%% is the main-level top: load_module (unless
module => 0), daemon off, master_process on, pid, error_log
<prefix>/error.log <level>, events { worker_connections 256; }. The
http-level lines (client_body/proxy/fastcgi/uwsgi/scgi temp paths in
the prefix, access_log <prefix>/access.log) go where %%HTTP%% is, or,
without it, at the top of the first "http {" block of a config that
uses %%BASE%%. worker_processes is left to the test. An unknown %%X%%
dies.

=head2 nginx instances

The default instance is "nginx" with the temp dir as prefix; any other
name gets <dir>/<name>/ as prefix (own nginx.conf, error.log,
access.log, stderr.log).

    $t->run_nginx(name => 'gw2', conf => $text, wait_ports => [...])
        starts "nginx -p <prefix>/ -c nginx.conf" in its own process
        group and waits until every "listen" port accepts and the
        master has its workers; dies with the log tail if nginx exits
    $t->reload(name => ..., conf => $new_text, wait_old => 1)
        HUP; waits until every old worker has exited and the new ones
        are up; returns 1, or 0 when the new config was refused
        ([emerg] logged, old workers kept)
    $t->stop_nginx($name [, $fast])
                             QUIT (TERM when $fast), wait; TERM then
                             KILL on timeout; 1 when it exited in time
    $t->nginx_pids($name)    (master, children of the master)
    $t->nginx_t($text)       ("nginx -t" exit code, output)
    $t->error_log($name), $t->access_log($name) (list of lines)

=head2 Redis

    $t->run_redis(name => 'redis', requirepass => 'pw',
        users => [[name, password, @acl_rules]], args => [...],
        loglevel => 'warning')
        redis-server --save '' --appendonly no on port('redis'),
        waits for PING; ACL rules default to ~* &* +@all
    $t->stop_redis($name), $t->kill_redis($name) (SIGKILL),
    $t->restart_redis($name) (same port and options, data gone)
    $t->redis(@cmd)          one command on a fresh connection to the
        default Redis, authenticated with requirepass if any. Replies:
        scalars, numbers, undef for nil, array refs, and errors as
        Test::Vetting::Redis::Error objects (stringify to the message;
        test with is_redis_error). Dies when Redis cannot be reached.
    $t->redis_client(name => ..., auth => [...])
        a Test::Vetting::Redis connection (cmd, pipeline, close)

=head2 Fake servers and daemons

    $t->run_upstream($name, \&handler | \%response)
        forking HTTP/1.1 server on port($name); see
        Test::Vetting::Upstream for the request hash and the answers a
        handler may give. Every request is appended as a JSON line to
        <dir>/upstream-<name>.log before the handler runs.
    $t->upstream_requests($name)   list of request hashes seen so far
    $t->run_tcp($name, sub { my ($sock, $seq) = @_; ... })
        forking raw TCP server (a fake Redis, say)
    $t->run_daemon(\@cmd | \&code, name => ..., port => name|number,
        env => {...}, cwd => ...)
        any program, in its own process group, output in
        <dir>/daemon-<name>.log; waits for the port when given
    $t->stop_upstream($name), $t->stop_tcp($name), $t->stop_daemon($name)
    $t->pids                 { "kind:name" => pid } of what runs

Exported helpers: http_response(%o) and pieces($raw, $size, $delay)
to build answers; is_redis_error($v).

All processes are stopped at the end (done_testing, END, also after
die or SIGINT/SIGTERM): whole process groups are killed.

=head2 HTTP client (exported, see Test::Vetting::HTTP)

    http($port, $raw | \@pieces, timeout => $s)
    http_get($port, $uri, %headers)
    http_post($port, $uri, $body, %headers)
    http_req($port, $method, $uri, headers => ..., body => ...,
        version => '1.1', timeout => $s)
    http_burst($port, \@raw_requests)   list of responses, in order

Timeouts default to 10 s and are scaled by TEST_VETTING_TIMEOUT_MULT.

=head2 Logs and end checks

    $t->wait_for_log($file, qr/.../, $timeout, $from_offset)
        the first matching line, or undef on timeout
    $t->log_size($file)      current size, to pass as $from_offset
    $t->audit_events($file)  list of hashes from a JSON-lines file
    $t->allow_log(qr/.../)   lines the end checks may ignore
    $t->scan_log($text)      { alerts, crashes, sanitizer } line lists
    $t->check_logs           the end checks, as three tests per instance
    $t->done_testing         stops nginx gracefully (so workers report
        sockets left open), runs check_logs, stops everything, then
        Test::More::done_testing

The end checks, per instance ever started: "no alerts in error.log of
NAME" ([alert], [emerg], "open socket #N left in connection"), "no
crashed workers in NAME" ("exited on signal", "core dumped"), "no
sanitizer reports in NAME" ("Sanitizer", "runtime error:"), over
error.log and stderr.log.

=cut

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Test::More ();
use Time::HiRes qw(sleep time);

use Test::Vetting::HTTP;
use Test::Vetting::Redis qw(is_error);
use Test::Vetting::Upstream qw(http_response pieces);

our @EXPORT = (@Test::Vetting::HTTP::EXPORT,
    qw(http_response pieces is_redis_error));

my $root = abs_path(dirname(__FILE__) . '/../../..');
my @objects;


sub new {
    my ($class, %o) = @_;

    my $self = bless {
        owner       => $$,
        with_module => $o{module} // 1,
        binary      => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        module_path => _module_path(),
        log_level   => 'info',
        ports       => {},
        taken       => {},
        nginx       => {},
        redis       => {},
        procs       => {},
        allow       => [],
        nginx_t     => 0,
    }, $class;

    $self->_module_missing if $self->{with_module} && !$self->has_module;

    $self->{dir} = tempdir('vetting-XXXXXXXX', TMPDIR => 1);
    chmod 0777, $self->{dir} if $> == 0;

    push @objects, $self;

    # exit, not die by signal, so that END stops what runs; a closed
    # output (prove | head) leaves nowhere to say so

    for my $sig (qw(INT TERM HUP PIPE)) {
        next if ref $SIG{$sig};

        $SIG{$sig} = sub {
            Test::More->builder->diag("caught SIG$sig") if $sig ne 'PIPE';
            exit 1;
        };
    }

    return $self;
}


sub _module_path {
    my $path = $ENV{VETTING_MODULE}
        || "$root/build/ngx_http_vetting_module.so";

    return File::Spec->rel2abs($path);
}


sub _module_missing {
    my ($self) = @_;

    my $why = "no module at $self->{module_path} (run make, or set "
        . 'VETTING_MODULE)';

    Test::More::plan(skip_all => $why) if $ENV{VETTING_ALLOW_SKIP};

    my $tb = Test::More->builder;
    $tb->plan(tests => 1) if !$tb->has_plan;
    $tb->ok(0, 'vetting module is built');
    $tb->diag("$why; VETTING_ALLOW_SKIP=1 skips instead of failing");
    exit 1;
}


sub dir          { $_[0]{dir} }
sub module_path  { $_[0]{module_path} }
sub nginx_binary { $_[0]{binary} }
sub has_module   { -f $_[0]{module_path} }
sub log_level    { $_[0]{log_level} = $_[1]; $_[0] }
sub worker_user  { $_[0]{worker_user} = $_[1]; $_[0] }
sub allow_log    { my $self = shift; push @{ $self->{allow} }, @_; $self }
sub is_redis_error { is_error($_[0]) }


sub has_program {
    my ($self, $name) = @_;

    return scalar grep { -x "$_/$name" } split /:/, $ENV{PATH} // '';
}


sub _mult { $ENV{TEST_VETTING_TIMEOUT_MULT} || 1 }


###############################################################################
# ports and files

sub port {
    my ($self, $name) = @_;

    $name //= 'nginx';

    return $self->{ports}{$name} //= $self->_free_port;
}


# Ports come from below the kernel's ephemeral range (where the kernel
# never picks source ports), checked by binding 127.0.0.1:port. Inside
# the range a port freed and bound again (restart_redis) may meanwhile
# serve as a source port, even of a connection to itself. When the
# range leaves no room below it, bind 127.0.0.1:0 and release.
sub _free_port {
    my ($self) = @_;

    my $low = 32768;

    if (open my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        ($low) = split ' ', scalar <$fh>;
    }

    for (1 .. ($low > 11000 ? 500 : 0)) {
        my $p = 10000 + int rand($low - 10000);
        next if $self->{taken}{$p};

        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $p, Proto => 'tcp', Listen => 1) or next;
        close $s;

        $self->{taken}{$p} = 1;
        return $p;
    }

    for (1 .. 100) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => 0, Proto => 'tcp', Listen => 1) or next;
        my $p = $s->sockport;
        close $s;
        next if $self->{taken}{$p}++;
        return $p;
    }

    die "no free port\n";
}


sub _path {
    my ($self, $name) = @_;

    return File::Spec->file_name_is_absolute($name) ? $name
        : "$self->{dir}/$name";
}


sub write_file {
    my ($self, $name, $content) = @_;

    my $path = $self->_path($name);
    make_path(dirname($path));

    open my $fh, '>', $path or die "cannot write $path: $!\n";
    binmode $fh;
    print $fh $content;
    close $fh;

    chmod 0644, $path;

    return $path;
}


sub read_file {
    my ($self, $name) = @_;

    open my $fh, '<', $self->_path($name) or return undef;
    binmode $fh;
    local $/;

    return scalar <$fh>;
}


sub log_size {
    my ($self, $name) = @_;

    return -s $self->_path($name) // 0;
}


###############################################################################
# configuration

sub _instance {
    my ($self, $name) = @_;

    $name //= 'nginx';

    return $self->{nginx}{$name} //= do {
        my $prefix = $name eq 'nginx' ? $self->{dir} : "$self->{dir}/$name";
        die "bad instance name \"$name\"\n" if $name !~ /^[\w.-]+$/;

        make_path($prefix);
        chmod 0777, $prefix if $> == 0;

        { name => $name, prefix => $prefix, conf => "$prefix/nginx.conf" };
    };
}


sub prefix { $_[0]->_instance($_[1])->{prefix} }


sub _base {
    my ($self, $prefix) = @_;

    my $text = '';

    $text .= "load_module $self->{module_path};\n" if $self->{with_module};
    $text .= "user $self->{worker_user};\n" if $self->{worker_user};

    return $text . <<"EOF";
daemon off;
master_process on;
pid $prefix/nginx.pid;
error_log $prefix/error.log $self->{log_level};

events {
    worker_connections 256;
}
EOF
}


sub _http_base {
    my ($self, $prefix) = @_;

    return join '', map { "    $_;\n" }
        "client_body_temp_path $prefix/client_body_temp",
        "proxy_temp_path $prefix/proxy_temp",
        "fastcgi_temp_path $prefix/fastcgi_temp",
        "uwsgi_temp_path $prefix/uwsgi_temp",
        "scgi_temp_path $prefix/scgi_temp",
        "access_log $prefix/access.log";
}


sub expand {
    my ($self, $text, $name) = @_;

    return $self->_expand($text, $self->_instance($name)->{prefix});
}


sub _expand {
    my ($self, $text, $prefix) = @_;

    my $http = $self->_http_base($prefix);
    my $base = $text =~ s/%%BASE%%/$self->_base($prefix)/ge;

    if (!($text =~ s/^[ \t]*%%HTTP%%[ \t]*\n/$http/mg) && $base) {
        $text =~ s/^(\s*http\s*\{[^\n]*\n)/$1$http/m;
    }

    $text =~ s/%%PORT:([\w.-]+)%%/$self->port($1)/ge;
    $text =~ s/%%MODULE%%/$self->{module_path}/g;
    $text =~ s/%%DIR%%/$self->{dir}/g;
    $text =~ s/%%PREFIX%%/$prefix/g;

    die "unknown placeholder $1 in nginx.conf\n" if $text =~ /(%%[^%\s]*%%)/;

    return $text;
}


sub write_conf {
    my ($self, $text, $name) = @_;

    my $inst = $self->_instance($name);
    my $conf = $self->_expand($text, $inst->{prefix});

    $self->write_file($inst->{conf}, $conf);

    return $conf;
}


sub _worker_count {
    my ($conf) = @_;

    return 0 if $conf =~ /^\s*master_process\s+off\s*;/m;
    return 1 if $conf !~ /^\s*worker_processes\s+(\d+)\s*;/m;

    return $1;
}


sub _listen_ports {
    my ($conf) = @_;

    my @ports;

    while ($conf =~ /^\s*listen\s+([^\s;]+)/mg) {
        my $addr = $1;
        next if $addr =~ /^unix:/;
        push @ports, $1 if $addr =~ /(?:^|:)(\d+)$/;
    }

    return @ports;
}


###############################################################################
# nginx

sub run_nginx {
    my ($self, %o) = @_;

    my $inst = $self->_instance($o{name});
    my $name = $inst->{name};

    die "nginx $name is already running\n" if $inst->{pid};

    $self->write_conf($o{conf}, $name) if defined $o{conf};
    my $conf = $self->read_file($inst->{conf})
        // die "nginx $name has no nginx.conf: call write_conf first\n";

    if ($self->{with_module} && !$self->has_module) {
        die "no module at $self->{module_path}\n";
    }

    $inst->{workers} = _worker_count($conf);
    $inst->{started} = 1;

    my $pid = $self->_spawn("nginx:$name",
        cmd => [$self->{binary}, '-p', "$inst->{prefix}/",
            '-e', "$inst->{prefix}/error.log", '-c', $inst->{conf}],
        out => "$inst->{prefix}/stderr.log");

    $inst->{pid} = $pid;

    my @ports = @{ $o{wait_ports} // [_listen_ports($conf)] };
    my $deadline = time + 10 * _mult();

    while (1) {
        if (!$self->_alive("nginx:$name")) {
            $inst->{pid} = undef;
            die "nginx $name exited at start\n"
                . $self->_tail("$inst->{prefix}/stderr.log")
                . $self->_tail("$inst->{prefix}/error.log");
        }

        my @kids = _children($pid);
        last if @kids >= $inst->{workers} && !grep { !_accepts($_) } @ports;

        if (time > $deadline) {
            die "nginx $name did not start in time\n"
                . $self->_tail("$inst->{prefix}/error.log");
        }

        sleep 0.02;
    }

    return $self;
}


sub reload {
    my ($self, %o) = @_;

    my $inst = $self->_instance($o{name});
    my $pid = $inst->{pid} or die "nginx $inst->{name} is not running\n";

    $self->write_conf($o{conf}, $inst->{name}) if defined $o{conf};

    my $expect = _worker_count($self->read_file($inst->{conf}));
    my %old = map { $_ => 1 } _children($pid);
    my $log = "$inst->{prefix}/error.log";
    my $mark = $self->log_size($log);
    my $deadline = time + 10 * _mult();

    kill 'HUP', $pid;

    while (time < $deadline) {
        my @kids = _children($pid);
        my @new = grep { !$old{$_} } @kids;

        if (@new >= $expect
            && (!($o{wait_old} // 1) || !grep { $old{$_} } @kids))
        {
            $inst->{workers} = $expect;
            return 1;
        }

        return 0 if !@new && $self->_log_from($log, $mark) =~ /\[emerg\]/;

        sleep 0.02;
    }

    die "reload of nginx $inst->{name} did not finish in time\n"
        . $self->_tail($log);
}


# QUIT lets workers finish their requests and report sockets left open;
# with $fast, TERM (used when a test file dies)
sub stop_nginx {
    my ($self, $name, $fast) = @_;

    my $inst = $self->_instance($name);
    return if !$inst->{pid};

    $inst->{pid} = undef;

    return $self->_stop("nginx:$inst->{name}", $fast ? 'TERM' : 'QUIT', 10);
}


sub nginx_pids {
    my ($self, $name) = @_;

    my $pid = $self->_instance($name)->{pid} or return ();

    return ($pid, _children($pid));
}


sub nginx_t {
    my ($self, $text) = @_;

    my $prefix = "$self->{dir}/nginx-t-" . ++$self->{nginx_t};
    make_path($prefix);
    chmod 0777, $prefix if $> == 0;

    my $conf = $self->write_file("$prefix/nginx.conf",
        $self->_expand($text, $prefix));

    my $pid = open(my $fh, '-|') // die "fork: $!\n";

    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec($self->{binary}, '-t', '-p', "$prefix/",
            '-e', "$prefix/error.log", '-c', $conf)
            or print "exec $self->{binary}: $!\n";
        POSIX::_exit(127);
    }

    local $/;
    my $out = <$fh> // '';
    close $fh;

    return ($? >> 8, $out);
}


sub error_log {
    my ($self, $name) = @_;

    return $self->read_file($self->_instance($name)->{prefix}
        . '/error.log') // '';
}


sub access_log {
    my ($self, $name) = @_;

    my $text = $self->read_file($self->_instance($name)->{prefix}
        . '/access.log') // '';

    return split /\n/, $text;
}


# children of a process that are still alive (zombies excluded)
sub _children {
    my ($ppid) = @_;

    my @kids;

    opendir my $dh, '/proc' or return ();

    for my $p (grep { /^\d+$/ } readdir $dh) {
        open my $fh, '<', "/proc/$p/stat" or next;
        my $stat = <$fh> // next;

        my ($state, $parent) =
            split ' ', substr($stat, rindex($stat, ')') + 2);

        push @kids, $p if $parent == $ppid && $state !~ /^[ZX]/;
    }

    return sort { $a <=> $b } @kids;
}


sub _accepts {
    my ($port) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $port, Proto => 'tcp', Timeout => 1) or return 0;
    close $s;

    return 1;
}


###############################################################################
# Redis

sub run_redis {
    my ($self, %o) = @_;

    my $name = $o{name} // 'redis';
    my $r = $self->{redis}{$name} //= { name => $name };

    die "redis $name is already running\n" if $self->{procs}{"redis:$name"};

    my $dir = "$self->{dir}/redis-$name";
    make_path($dir);

    my @cmd = ($ENV{TEST_REDIS_BINARY} || 'redis-server',
        '--port', $self->port($name), '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--dir', $dir,
        '--daemonize', 'no', '--logfile', "$dir/redis.log",
        '--loglevel', $o{loglevel} // 'warning');

    push @cmd, '--requirepass', $o{requirepass} if defined $o{requirepass};

    for my $u (@{ $o{users} // [] }) {
        my ($user, $pass, @rules) = @$u;
        push @cmd, '--user', $user, 'on', ">$pass",
            @rules ? @rules : ('~*', '&*', '+@all');
    }

    push @cmd, @{ $o{args} // [] };

    $r->{opts} = \%o;
    $r->{auth} = $o{auth}
        // (defined $o{requirepass} ? [$o{requirepass}] : undef);

    $self->_spawn("redis:$name", cmd => \@cmd, out => "$dir/stdout.log");

    my $deadline = time + 10 * _mult();

    while (1) {
        my $pong = eval { $self->redis_client(name => $name)->cmd('PING') };
        return $self if defined $pong && $pong eq 'PONG';

        if (!$self->_alive("redis:$name") || time > $deadline) {
            die "redis $name did not start\n"
                . $self->_tail("$dir/stdout.log")
                . $self->_tail("$dir/redis.log");
        }

        sleep 0.02;
    }
}


sub stop_redis {
    my ($self, $name) = @_;

    return $self->_stop('redis:' . ($name // 'redis'), 'TERM', 5);
}


sub kill_redis {
    my ($self, $name) = @_;

    return $self->_stop('redis:' . ($name // 'redis'), 'KILL', 5);
}


sub restart_redis {
    my ($self, $name) = @_;

    $name //= 'redis';
    my $r = $self->{redis}{$name} or die "redis $name was never started\n";

    $self->stop_redis($name);

    return $self->run_redis(%{ $r->{opts} }, name => $name);
}


sub redis_client {
    my ($self, %o) = @_;

    my $name = $o{name} // 'redis';
    my $r = $self->{redis}{$name} // {};

    return Test::Vetting::Redis->new(port => $self->port($name),
        auth => $o{auth} // $r->{auth}, timeout => $o{timeout});
}


sub redis {
    my ($self, @cmd) = @_;

    my $c = $self->redis_client;
    my $reply = $c->cmd(@cmd);
    $c->close;

    return $reply;
}


###############################################################################
# fake servers and daemons

sub run_tcp {
    my ($self, $name, $handler, %o) = @_;

    my $port = $self->port($name);
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $port, Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "cannot listen on port $port for $name: $!\n";

    $self->_spawn(($o{kind} // 'tcp') . ":$name",
        code => sub { Test::Vetting::Upstream::serve($listen, $handler) },
        out => "$self->{dir}/" . ($o{kind} // 'tcp') . "-$name.err");

    close $listen;

    return $self;
}


sub run_upstream {
    my ($self, $name, $handler) = @_;

    my $log = "$self->{dir}/upstream-$name.log";
    $self->write_file($log, '');

    return $self->run_tcp($name,
        Test::Vetting::Upstream::http_server($handler, $log),
        kind => 'upstream');
}


sub upstream_requests {
    my ($self, $name) = @_;

    my $text = $self->read_file("upstream-$name.log") // '';
    my $json = JSON::PP->new;

    return map { $json->decode($_) } grep { length } split /\n/, $text;
}


sub stop_upstream { $_[0]->_stop("upstream:$_[1]", 'TERM', 5) }
sub stop_tcp      { $_[0]->_stop("tcp:$_[1]", 'TERM', 5) }
sub stop_daemon   { $_[0]->_stop("daemon:$_[1]", 'TERM', 5) }


sub run_daemon {
    my ($self, $cmd, %o) = @_;

    my $name = $o{name}
        // (ref $cmd eq 'ARRAY' ? $cmd->[0] =~ s{.*/}{}r : 'code');

    my $pid = $self->_spawn("daemon:$name",
        (ref $cmd eq 'CODE' ? (code => $cmd) : (cmd => $cmd)),
        out => "$self->{dir}/daemon-$name.log",
        env => $o{env}, cwd => $o{cwd});

    return $pid if !defined $o{port};

    my $port = $o{port} =~ /^\d+$/ ? $o{port} : $self->port($o{port});
    my $deadline = time + ($o{timeout} // 10) * _mult();

    until (_accepts($port)) {
        if (!$self->_alive("daemon:$name") || time > $deadline) {
            die "daemon $name did not listen on port $port\n"
                . $self->_tail("$self->{dir}/daemon-$name.log");
        }
        sleep 0.05;
    }

    return $pid;
}


sub pids {
    my ($self) = @_;

    return { map { $_ => $self->{procs}{$_}{pid} } keys %{ $self->{procs} } };
}


###############################################################################
# processes

sub _spawn {
    my ($self, $key, %o) = @_;

    die "$key is already running\n" if $self->{procs}{$key};

    my $pid = fork // die "fork: $!\n";

    if ($pid == 0) {
        eval {
            POSIX::setpgid(0, 0);
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP QUIT PIPE CHLD ALRM);

            open STDIN, '<', '/dev/null';
            if ($o{out}) {
                open STDOUT, '>>', $o{out} or die "open $o{out}: $!\n";
                open STDERR, '>&', \*STDOUT;
            }

            chdir $o{cwd} or die "chdir $o{cwd}: $!\n" if $o{cwd};
            @ENV{ keys %{ $o{env} } } = values %{ $o{env} } if $o{env};

            if ($o{code}) {
                $o{code}->();
                POSIX::_exit(0);
            }

            exec { $o{cmd}[0] } @{ $o{cmd} };
            die "exec $o{cmd}[0]: $!\n";
        };

        print STDERR $@ if $@;
        POSIX::_exit(127);
    }

    # both sides set the group, so it exists whoever runs first
    POSIX::setpgid($pid, $pid);

    $self->{procs}{$key} = { pid => $pid };

    return $pid;
}


sub _alive {
    my ($self, $key) = @_;

    my $p = $self->{procs}{$key} or return 0;
    return 1 if !$p->{exited} && waitpid($p->{pid}, WNOHANG) == 0;

    $p->{exited} = 1;
    return 0;
}


sub _reap {
    my ($pid, $timeout) = @_;

    my $deadline = time + $timeout;

    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return 1 if $r == $pid || $r == -1;
        return 0 if time > $deadline;
        sleep 0.01;
    }
}


# signals the process, waits, then escalates to the whole group
sub _stop {
    my ($self, $key, $sig, $timeout) = @_;

    my $p = delete $self->{procs}{$key} or return 0;
    my $pid = $p->{pid};
    my $clean = 1;

    if (!$p->{exited}) {
        kill $sig, $pid;

        if (!_reap($pid, $timeout * _mult())) {
            Test::More->builder->diag("$key did not exit on SIG$sig");
            $clean = 0;
            kill 'TERM', -$pid;
            _reap($pid, 2) or kill 'KILL', -$pid;
            _reap($pid, 5);
        }
    }

    # connection children of fake servers, workers left by a dead master
    kill 'KILL', -$pid;

    return $clean;
}


sub stop_all {
    my ($self, $fast) = @_;

    return if $$ != $self->{owner};

    for my $name (sort keys %{ $self->{nginx} }) {
        $self->stop_nginx($name, $fast);
    }

    for my $key (sort keys %{ $self->{procs} }) {
        $self->_stop($key, 'TERM', 3);
    }
}


sub _cleanup {
    my ($self) = @_;

    return if $$ != $self->{owner} || $self->{cleaned}++;

    # after done_testing nothing runs any more; otherwise the file died
    $self->stop_all(1);
    $self->_report_handlers;

    if ($ENV{TEST_VETTING_LEAVE}) {
        Test::More->builder->diag("left $self->{dir}");
    } else {
        remove_tree($self->{dir});
    }
}


END {
    my $status = $?;
    $_->_cleanup for @objects;
    $? = $status;
}


###############################################################################
# logs and end checks

sub _log_from {
    my ($self, $name, $offset) = @_;

    my $text = $self->read_file($name) // '';

    return substr($text, $offset // 0) // '';
}


sub _tail {
    my ($self, $name) = @_;

    my $text = $self->read_file($name) // return '';
    my @lines = split /\n/, $text;
    splice @lines, 0, -20 if @lines > 20;

    return "--- $name:\n" . join('', map { "$_\n" } @lines);
}


sub wait_for_log {
    my ($self, $name, $re, $timeout, $from) = @_;

    my $deadline = time + ($timeout // 10) * _mult();

    while (1) {
        for my $line (split /\n/, $self->_log_from($name, $from)) {
            return $line if $line =~ $re;
        }

        return undef if time > $deadline;
        sleep 0.05;
    }
}


sub audit_events {
    my ($self, $name) = @_;

    $name //= 'audit.jsonl';
    my $text = $self->read_file($name) // '';
    my $json = JSON::PP->new->utf8;
    my ($n, @events) = (0);

    # a last line without "\n" may still be being written
    while ($text =~ /([^\n]*)\n/g) {
        my $line = $1;
        $n++;
        next if $line !~ /\S/;

        my $event = eval { $json->decode($line) }
            // die "$name line $n is not JSON: $@";
        push @events, $event;
    }

    return @events;
}


sub scan_log {
    my ($self, $text) = @_;

    my %found = (alerts => [], crashes => [], sanitizer => []);

    for my $line (split /\n/, $text // '') {
        next if grep { $line =~ $_ } @{ $self->{allow} };

        push @{ $found{alerts} }, $line
            if $line =~ /\[(?:alert|emerg)\]|open socket #\d+ left in conn/;
        push @{ $found{crashes} }, $line
            if $line =~ /exited on signal \d+|core dumped/;
        push @{ $found{sanitizer} }, $line
            if $line =~ /Sanitizer|runtime error:/;
    }

    return \%found;
}


sub check_logs {
    my ($self) = @_;

    my $tb = Test::More->builder;

    for my $name (sort keys %{ $self->{nginx} }) {
        my $inst = $self->{nginx}{$name};
        next if !$inst->{started};

        my $text = join "\n", map { $self->read_file("$inst->{prefix}/$_")
            // '' } qw(error.log stderr.log);
        my $found = $self->scan_log($text);

        for (['alerts', "no alerts in error.log of $name"],
             ['crashes', "no crashed workers in $name"],
             ['sanitizer', "no sanitizer reports in $name"])
        {
            my ($kind, $title) = @$_;
            my @lines = @{ $found->{$kind} };

            $tb->ok(!@lines, $title)
                or $tb->diag(join "\n", grep { defined } @lines[0 .. 9]);
        }
    }
}


# what handlers of fake servers printed (a die, a warning), once
sub _report_handlers {
    my ($self) = @_;

    return if $self->{reported}++;

    for my $err (glob "$self->{dir}/{upstream,tcp}-*.err") {
        my $text = $self->read_file($err);
        Test::More->builder->diag("$err:\n$text") if length $text;
    }
}


sub done_testing {
    my ($self, @args) = @_;

    $self->stop_nginx($_) for sort keys %{ $self->{nginx} };
    $self->check_logs;
    $self->stop_all;
    $self->_report_handlers;

    return Test::More::done_testing(@args);
}

1;
