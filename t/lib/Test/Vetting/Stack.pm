package Test::Vetting::Stack;

# A payer stack for the Redis tests: a fake authorization server, a fake
# FHIR server, and gateways (nginx with the module) that share one Redis.
#
#   my $t = Test::Vetting->new;
#   my $s = Test::Vetting::Stack->new($t);   # starts the AS and FHIR fakes
#   $t->run_redis;
#   $t->run_nginx(name => 'gw1', conf => $s->gateway_conf('gw1',
#       fhir => 'vetting_rate 10r/m burst=10;'));
#
#   my $tok = $s->exchange('gw1', app => 'app-1', member => 'm1');
#   my $r = $s->fhir('gw1', $tok->{access});            # GET /fhir/r4/...
#   my $st = $s->status('gw1');                         # decoded JSON
#
# The authorization server (upstream "as"):
#   GET  /oauth2/authorize?client_id=..&redirect_uri=..&member=M&state=..
#        302 to redirect_uri?code=code.M.<random>&state=..
#   POST /oauth2/token, grant_type=authorization_code, code=code.M.<random>
#        200 with a fresh random access token, refresh token
#        "rt.M.<random>" and "patient": "M"; a code used before, or one
#        not of that form, 400 invalid_grant
#   POST /oauth2/token, grant_type=refresh_token, refresh_token=rt.M.<r>
#        200 with fresh tokens for M; anything else 400 invalid_grant
# The FHIR server (upstream "fhir") answers 200 with a small resource.
#
# Gateway configuration, gateway_conf($name, %o), with port($name):
#   /oauth2/authorize   vetting_endpoint authorize
#   /oauth2/token       vetting_endpoint token
#   /fhir/r4            vetting_endpoint fhir
#   /status             vetting_endpoint status
# Options: workers (2), redis ("redis": the harness instance),
# redis_args ("db=3 user=u password=p"), prefix, timeout (100ms),
# connect_timeout (500ms), sync (100ms), resync (30s), backoff
# ("100ms 1s"), zone ("16m"), tenant, http, server, fhir, token,
# authorize (directives added there), locations and servers (text added
# in the server block and in http).  server_block($listen, %o)
# writes one more server block with the same locations (for "servers":
# a tenant of its own, say).
#
# Client helpers take a gateway name (its port is $t->port($name)) or a
# port number: authorize (the code of its redirect in {code}), exchange
# and refresh ({access}, {refresh}, {member} from the JSON), fhir,
# fhir_raw (bytes for http_burst), status, suspension (the gateway's
# mirror entry of an app).  Exported helpers: wait_until, parallel,
# token_key, form_encode, form_decode.

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use Exporter qw(import);
use Fcntl qw(:flock);
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

use Test::Vetting::HTTP qw(http_req);

our @EXPORT_OK = qw(wait_until parallel token_key form_encode
    form_decode);


sub new {
    my ($class, $t) = @_;

    my $self = bless { t => $t }, $class;

    my $codes = $t->write_file('as-codes.txt', '');

    $t->run_upstream('as', _authorization_server($codes));
    $t->run_upstream('fhir', \&_fhir_server);

    return $self;
}


sub t { $_[0]{t} }


###############################################################################
# the fake servers; they run in the upstreams' processes

sub _random_hex {
    my ($n) = @_;

    my $bytes;

    open my $fh, '<:raw', '/dev/urandom' or die "urandom: $!\n";
    read $fh, $bytes, $n;
    close $fh;

    return unpack 'H*', $bytes;
}


sub _authorization_server {
    my ($codes) = @_;

    return sub {
        my ($r) = @_;

        if ($r->{path} =~ m{/authorize$}) {
            my %q = form_decode($r->{query} // '');
            my $member = $q{member} // 'm0';
            my $code = "code.$member." . _random_hex(12);
            my $uri = $q{redirect_uri} // 'https://app.example/cb';
            my $loc = "$uri?code=$code"
                . (defined $q{state} ? "&state=$q{state}" : '');

            return { status => 302, headers => { Location => $loc } };
        }

        return { status => 404 } if $r->{path} !~ m{/token$};

        my %f = form_decode($r->{body});
        my $grant = $f{grant_type} // '';
        my $member;

        if ($grant eq 'authorization_code') {
            my $code = $f{code} // '';

            return _oauth_error('invalid_grant')
                if $code !~ /^code\.([A-Za-z0-9-]+)\.[0-9a-f]+$/;
            $member = $1;

            return _oauth_error('invalid_grant')
                if !_first_use($codes, $code);

        } elsif ($grant eq 'refresh_token') {
            my $rt = $f{refresh_token} // '';

            return _oauth_error('invalid_grant')
                if $rt !~ /^rt\.([A-Za-z0-9-]+)\.[0-9a-f]+$/;
            $member = $1;

        } else {
            return _oauth_error('unsupported_grant_type');
        }

        my $body = JSON::PP->new->canonical->encode({
            access_token  => 'at.' . _random_hex(24),
            token_type    => 'Bearer',
            expires_in    => 3600,
            scope         => 'launch/patient patient/*.read offline_access',
            refresh_token => "rt.$member." . _random_hex(24),
            patient       => $member,
        });

        return { status => 200, body => $body, headers => {
            'Content-Type' => 'application/json',
            'Cache-Control' => 'no-store' } };
    };
}


sub _oauth_error {
    my ($error) = @_;

    return { status => 400, body => qq({"error":"$error"}),
        headers => { 'Content-Type' => 'application/json' } };
}


# a code is good once: the codes used so far are kept in a file, since
# every connection is served by a process of its own
sub _first_use {
    my ($file, $code) = @_;

    open my $fh, '+<', $file or die "$file: $!\n";
    flock $fh, LOCK_EX;

    while (my $line = <$fh>) {
        chomp $line;
        return 0 if $line eq $code;
    }

    seek $fh, 0, 2;
    print $fh "$code\n";
    close $fh;

    return 1;
}


sub _fhir_server {
    my ($r) = @_;

    my ($type, $id) = $r->{path} =~ m{/fhir/r4/(\w+)(?:/([^/]+))?};

    return { status => 200,
        headers => { 'Content-Type' => 'application/fhir+json' },
        body => JSON::PP->new->canonical->encode({
            resourceType => $type // 'CapabilityStatement',
            id => $id // 'x' }) };
}


###############################################################################
# gateways

sub gateway_conf {
    my ($self, $name, %o) = @_;

    my $workers = $o{workers} // 2;
    my $redis = $o{redis} // 'redis';
    my $args = defined $o{redis_args} ? " $o{redis_args}" : '';
    my $prefix = $o{prefix} // 'vt:';
    my $zone = $o{zone} // '16m';

    my $redis_conf = <<"EOF";
    vetting_redis 127.0.0.1:%%PORT:$redis%%$args;
    vetting_redis_prefix $prefix;
    vetting_redis_timeout @{[ $o{timeout} // '100ms' ]};
    vetting_redis_connect_timeout @{[ $o{connect_timeout} // '500ms' ]};
    vetting_redis_sync_interval @{[ $o{sync} // '100ms' ]};
    vetting_redis_resync_interval @{[ $o{resync} // '30s' ]};
    vetting_redis_backoff @{[ $o{backoff} // '100ms 1s' ]};
EOF

    return <<"EOF";
%%BASE%%
worker_processes $workers;

http {
    vetting_zone vetting:$zone;
    vetting_gateway_id $name;
    vetting_audit_log %%PREFIX%%/audit.jsonl;
$redis_conf
    log_format vetting '\$request_uri \$status app=\$vetting_app '
                       'member=\$vetting_member rule=\$vetting_rule';
    access_log %%PREFIX%%/vetting.log vetting;

@{[ $o{http} // '' ]}

@{[ $self->server_block($name, %o) ]}
@{[ $o{servers} // '' ]}
}
EOF
}


# a server block listening on port($listen) with the four locations;
# tenant sets vetting_tenant
sub server_block {
    my ($self, $listen, %o) = @_;

    my $tenant = defined $o{tenant} ? "vetting_tenant $o{tenant};" : '';

    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT:$listen%%;
        server_name localhost;
        $tenant

@{[ $o{server} // '' ]}

        location = /oauth2/authorize {
            vetting_endpoint authorize;
@{[ $o{authorize} // '' ]}
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location = /oauth2/token {
            vetting_endpoint token;
@{[ $o{token} // '' ]}
            proxy_set_header Accept-Encoding "";
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4 {
            vetting_endpoint fhir;
@{[ $o{fhir} // '' ]}
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location = /status {
            vetting_endpoint status;
        }

@{[ $o{locations} // '' ]}
    }
EOF
}


###############################################################################
# clients

sub _port {
    my ($self, $gw) = @_;

    return $gw =~ /^\d+$/ ? $gw : $self->{t}->port($gw);
}


sub basic_auth {
    my ($app, $secret) = @_;

    return 'Basic ' . encode_base64("$app:" . ($secret // 'secret'), '');
}


# GET /oauth2/authorize; the code is taken from the redirect
sub authorize {
    my ($self, $gw, %o) = @_;

    my $q = form_encode(response_type => 'code', client_id => $o{app},
        redirect_uri => 'https://app.example/cb', state => 'st-1',
        member => $o{member} // 'm0', scope => 'patient/*.read');

    my $r = http_req($self->_port($gw), 'GET', "/oauth2/authorize?$q");
    my $loc = $r->header('Location') // '';

    ($r->{code}) = $loc =~ /[?&]code=([^&]+)/;

    return $r;
}


# an authorization-code exchange; the answer with access, refresh and
# member taken from its JSON
sub exchange {
    my ($self, $gw, %o) = @_;

    my $code = $o{code}
        // "code.$o{member}." . _random_hex(12);

    return $self->_token($gw, \%o, grant_type => 'authorization_code',
        code => $code, redirect_uri => 'https://app.example/cb');
}


sub refresh {
    my ($self, $gw, %o) = @_;

    return $self->_token($gw, \%o, grant_type => 'refresh_token',
        refresh_token => $o{refresh});
}


sub _token {
    my ($self, $gw, $o, @form) = @_;

    my @headers = ('Content-Type' => 'application/x-www-form-urlencoded');

    if ($o->{basic}) {
        push @headers, Authorization => basic_auth($o->{app});

    } else {
        push @form, client_id => $o->{app};
    }

    my $r = http_req($self->_port($gw), 'POST', '/oauth2/token',
        headers => \@headers, body => form_encode(@form));

    my $json = ($r->{status} // 0) == 200 ? $r->json : undef;

    if ($json) {
        $r->{access} = $json->{access_token};
        $r->{refresh} = $json->{refresh_token};
        $r->{member} = $json->{patient};
    }

    return $r;
}


# a FHIR call with a Bearer token: fhir($gw, $token, [$method, $path])
sub fhir {
    my ($self, $gw, $token, $method, $path, %o) = @_;

    $method //= 'GET';
    $path //= '/fhir/r4/Patient/p1';

    my @headers = defined $token ? (Authorization => "Bearer $token") : ();
    my $body;

    if ($method eq 'POST' || $method eq 'PUT') {
        push @headers, 'Content-Type' => 'application/fhir+json';
        $body = '{"resourceType":"Patient"}';
    }

    return http_req($self->_port($gw), $method, $path, headers => \@headers,
        body => $body, %o);
}


# the raw bytes of a FHIR read, for http_burst
sub fhir_raw {
    my ($self, $token, $path) = @_;

    $path //= '/fhir/r4/Patient/p1';

    return "GET $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer $token\r\nConnection: close\r\n\r\n";
}


sub status {
    my ($self, $gw) = @_;

    my $r = http_req($self->_port($gw), 'GET', '/status', timeout => 5);

    return $r->json // { error => $r->{error} // $r->{status} };
}


# the gateway's mirror entry of an app, or undef
sub suspension {
    my ($self, $gw, $app, $scope) = @_;

    $scope //= '*';

    for my $s (@{ $self->status($gw)->{suspensions} // [] }) {
        return $s if $s->{app} eq $app && $s->{scope} eq $scope;
    }

    return undef;
}


###############################################################################
# helpers

# calls $cond every $every seconds until it is true or $timeout passed;
# returns the seconds it took, or undef
sub wait_until {
    my ($cond, $timeout, $every) = @_;

    my $start = time;
    my $mult = $ENV{TEST_VETTING_TIMEOUT_MULT} || 1;

    while (1) {
        return time - $start if $cond->();
        return undef if time - $start > ($timeout // 5) * $mult;
        sleep $every // 0.02;
    }
}


# runs each code ref in a process of its own, all at once; returns what
# each returned (a scalar or a reference, passed as JSON), in order
sub parallel {
    my (@jobs) = @_;

    my (@pids, @fhs);

    for my $job (@jobs) {
        pipe my $r, my $w or die "pipe: $!\n";
        my $pid = fork // die "fork: $!\n";

        if ($pid == 0) {
            close $r;
            my $res = eval { $job->() };
            $res = { died => "$@" } if $@;
            print $w JSON::PP->new->allow_nonref->encode($res);
            close $w;
            POSIX::_exit(0);
        }

        close $w;
        push @pids, $pid;
        push @fhs, $r;
    }

    my @res;

    for my $i (0 .. $#fhs) {
        my $fh = $fhs[$i];
        local $/;
        my $text = <$fh>;
        close $fh;
        waitpid $pids[$i], 0;
        push @res, length $text
            ? JSON::PP->new->allow_nonref->decode($text) : undef;
    }

    return @res;
}


sub token_key {
    my ($token, $prefix) = @_;

    return ($prefix // 'vt:') . 'tok:' . sha256_hex($token);
}


sub form_encode {
    my (@pairs) = @_;

    my @out;

    while (my ($k, $v) = splice @pairs, 0, 2) {
        push @out, join '=', map {
            (my $s = $_) =~ s/([^A-Za-z0-9._~-])/sprintf '%%%02X', ord $1/ge;
            $s;
        } $k, $v;
    }

    return join '&', @out;
}


sub form_decode {
    my ($text) = @_;

    my %f;

    for my $pair (split /&/, $text // '') {
        my ($k, $v) = split /=/, $pair, 2;
        for ($k, $v) {
            next if !defined;
            tr/+/ /;
            s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        }
        $f{$k} = $v // '';
    }

    return %f;
}

1;
