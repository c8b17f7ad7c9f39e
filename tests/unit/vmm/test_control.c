/* Unit tests for the control protocol (vmm/vmm.h): vmm/control.c's request handling without a
 * VM (replies to bad lines; a quit is remembered for the restart loop, since a quit that races
 * with a guest reboot must still end vdi-vmm instead of being lost when the VM restarts), the
 * status reply's readiness, and vmm/proto.c's parser reading what the server writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/vmm.h"

static int setup(void **state)
{
    vmm_control_t *c = NULL;
    if (vmm_control_create(NULL, &c) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    vmm_control_destroy(*state);
    return 0;
}

struct machine {
    bool paused, stopped, power_ok;
    char why[128];
    int agent_err; /* what agent_message returns */
    char text[64];
    unsigned seconds;
};

static void m_status(void *ctx, struct vmm_status *st)
{
    struct machine *m = ctx;
    st->state = m->paused ? VMM_RUN_PAUSED : VMM_RUN_RUNNING;
    st->uptime_ms = 42;
    st->vcpus = 2;
    st->memory_mib = 256;
}
static void m_pause(void *ctx)
{
    ((struct machine *)ctx)->paused = true;
}
static void m_resume(void *ctx)
{
    ((struct machine *)ctx)->paused = false;
}
static bool m_paused(void *ctx)
{
    return ((struct machine *)ctx)->paused;
}
static int m_power_button(void *ctx)
{
    return ((struct machine *)ctx)->power_ok ? 0 : -ENOTSUP;
}
static void m_request_stop(void *ctx, const char *why)
{
    struct machine *m = ctx;
    m->stopped = true;
    snprintf(m->why, sizeof(m->why), "%s", why);
}
static const struct vmm_control_ops ops = {
    .status = m_status,
    .pause = m_pause,
    .resume = m_resume,
    .paused = m_paused,
    .power_button = m_power_button,
    .request_stop = m_request_stop,
};

static void m_agent_status(void *ctx, struct vmm_agent_status *st)
{
    (void)ctx;
    st->present = st->connected = st->up = true;
    snprintf(st->name, sizeof(st->name), "testdesk");
    snprintf(st->caps, sizeof(st->caps), "message");
    st->heartbeat_s = 5;
    st->last_ms_ago = 1234;
}
static int m_agent_message(void *ctx, const char *text, unsigned seconds)
{
    struct machine *m = ctx;
    snprintf(m->text, sizeof(m->text), "%s", text);
    m->seconds = seconds;
    return m->agent_err;
}
static const struct vmm_control_ops agent_ops = {
    .status = m_status,
    .pause = m_pause,
    .resume = m_resume,
    .paused = m_paused,
    .power_button = m_power_button,
    .request_stop = m_request_stop,
    .agent_status = m_agent_status,
    .agent_message = m_agent_message,
};

static char *handle_on(vmm_control_t *c, struct machine *m, const char *line)
{
    char *reply = NULL;
    vmm_control_handle(c, m ? &ops : NULL, m, line, &reply);
    assert_non_null(reply);
    return reply;
}

static char *handle(vmm_control_t *c, const char *line)
{
    char *reply = NULL;
    vmm_control_handle(c, NULL, NULL, line, &reply);
    assert_non_null(reply);
    return reply;
}

static void test_quit_is_remembered(void **state)
{
    vmm_control_t *c = *state;
    assert_false(vmm_control_quit_requested(c));
    char *r = handle(c, "{\"cmd\":\"quit\",\"id\":7}");
    assert_non_null(strstr(r, "\"ok\":true"));
    assert_non_null(strstr(r, "\"id\":7"));
    free(r);
    assert_true(vmm_control_quit_requested(c));
}

static void test_bad_lines_do_not_quit(void **state)
{
    vmm_control_t *c = *state;
    static const char *const bad[] = {
        "not json",
        "[1,2]",
        "{\"cmd\":42}",
        "{}",
        "{\"cmd\":\"quit\",\"cmd\":\"quit\"}",
        "{\"cmd\":\"frobnicate\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *r = handle(c, bad[i]);
        assert_non_null(strstr(r, "\"ok\":false"));
        assert_non_null(strstr(r, "\"error\":"));
        free(r);
    }
    assert_false(vmm_control_quit_requested(c));
}

static void test_commands_need_a_vm(void **state)
{
    vmm_control_t *c = *state;
    char *r = handle(c, "{\"cmd\":\"shutdown\"}");
    assert_non_null(strstr(r, "no virtual machine is running"));
    free(r);
    assert_false(vmm_control_quit_requested(c));
}

/* Parse what the server wrote with the client's parser (the contract has one codec). */
static struct vmm_msg parse(const char *line)
{
    struct vmm_msg m;
    assert_int_equal(vmm_msg_parse(line, strlen(line), &m), 0);
    return m;
}

static void test_status_says_ready_after_first_frame(void **state)
{
    vmm_control_t *c = *state;
    struct machine m = {0};
    char *r = handle_on(c, &m, "{\"cmd\":\"status\",\"id\":3}");
    struct vmm_msg msg = parse(r);
    free(r);
    assert_int_equal(msg.kind, VMM_MSG_REPLY);
    assert_true(msg.ok);
    assert_true(msg.has_id);
    assert_int_equal(msg.id, 3);
    assert_true(msg.has_status);
    assert_int_equal(msg.status.state, VMM_RUN_RUNNING);
    assert_false(msg.status.ready);
    assert_int_equal(msg.status.vcpus, 2);
    assert_int_equal(msg.status.memory_mib, 256);
    assert_int_equal(msg.status.uptime_ms, 42);
    assert_true(msg.status.rss_kib > 0);

    vmm_control_event(c, VMM_EVENT_READY, "first frame");
    r = handle_on(c, &m, "{\"cmd\":\"status\"}");
    msg = parse(r);
    free(r);
    assert_true(msg.status.ready);

    /* A machine built after a reboot is not ready until its own first frame. */
    vmm_control_new_machine(c);
    r = handle_on(c, NULL, "{\"cmd\":\"status\"}");
    msg = parse(r);
    free(r);
    assert_int_equal(msg.status.state, VMM_RUN_STOPPED);
    assert_false(msg.status.ready);
}

static void test_requests_reach_the_machine(void **state)
{
    vmm_control_t *c = *state;
    struct machine m = {0};
    char line[128];
    assert_true(vmm_request_format(VMM_CMD_PAUSE, 0, line, sizeof(line)) > 0);
    free(handle_on(c, &m, line));
    assert_true(m.paused);
    char *r = handle_on(c, &m, "{\"cmd\":\"status\"}");
    assert_int_equal(parse(r).status.state, VMM_RUN_PAUSED);
    free(r);
    /* shutdown resumes a paused guest first, and says whether the guest heard the button */
    int n = vmm_request_format(VMM_CMD_SHUTDOWN, 0, line, sizeof(line));
    assert_int_equal(line[n - 1], '\n');
    line[n - 1] = 0;
    r = handle_on(c, &m, line);
    struct vmm_msg msg = parse(r);
    free(r);
    assert_true(msg.ok);
    assert_false(msg.guest_notified);
    assert_false(m.paused);
    assert_true(m.stopped); /* timeout 0: stopped at once */
    assert_string_equal(m.why, "shutdown requested with no deadline");
    m.power_ok = true;
    r = handle_on(c, &m, "{\"cmd\":\"shutdown\",\"timeout_ms\":5000}");
    assert_true(parse(r).guest_notified);
    free(r);
    r = handle_on(c, &m, "{\"cmd\":\"shutdown\",\"timeout_ms\":3600001}");
    msg = parse(r);
    free(r);
    assert_false(msg.ok);
    assert_non_null(strstr(msg.error, "timeout_ms"));
    assert_int_equal(vmm_request_format(VMM_CMD_STATUS, 0, line, 8), -ENOSPC);
}

/* The guest agent's part of the contract: `status` carries "agent" (null without a port), and
 * `message` reaches the machine's agent with its errors in words. */
static void test_agent_requests(void **state)
{
    vmm_control_t *c = *state;
    struct machine m = {0};
    char line[256], *r;
    struct vmm_msg msg;

    r = handle_on(c, &m, "{\"cmd\":\"status\"}");
    assert_non_null(strstr(r, "\"agent\":null"));
    assert_false(parse(r).status.agent.present);
    free(r);
    r = handle_on(c, &m, "{\"cmd\":\"message\",\"text\":\"hi\"}");
    msg = parse(r);
    free(r);
    assert_false(msg.ok);
    assert_string_equal(msg.error, "no guest agent is connected");

    vmm_control_handle(c, &agent_ops, &m, "{\"cmd\":\"status\"}", &r);
    msg = parse(r);
    free(r);
    assert_true(msg.status.agent.present && msg.status.agent.connected && msg.status.agent.up);
    assert_string_equal(msg.status.agent.name, "testdesk");
    assert_string_equal(msg.status.agent.caps, "message");
    assert_int_equal(msg.status.agent.heartbeat_s, 5);
    assert_int_equal(msg.status.agent.last_ms_ago, 1234);

    int n = vmm_request_format_message("Grüße \"quoted\"", 90, line, sizeof(line));
    assert_true(n > 0);
    assert_int_equal(line[n - 1], '\n');
    line[n - 1] = 0;
    vmm_control_handle(c, &agent_ops, &m, line, &r);
    assert_true(parse(r).ok);
    free(r);
    assert_string_equal(m.text, "Grüße \"quoted\"");
    assert_int_equal(m.seconds, 90);
    static const struct {
        int err;
        const char *want;
    } errs[] = {
        {-ENOTCONN, "no guest agent is connected"},
        {-EOPNOTSUPP, "the guest agent does not show messages"},
        {-ENOBUFS, "the guest agent is not reading what it is sent"},
    };
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        m.agent_err = errs[i].err;
        vmm_control_handle(c, &agent_ops, &m, line, &r);
        msg = parse(r);
        free(r);
        assert_false(msg.ok);
        assert_string_equal(msg.error, errs[i].want);
    }
    static const char *const bad[] = {
        "{\"cmd\":\"message\"}",
        "{\"cmd\":\"message\",\"text\":\"\"}",
        "{\"cmd\":\"message\",\"text\":7}",
        "{\"cmd\":\"message\",\"text\":\"a\\u0000b\"}",
        "{\"cmd\":\"message\",\"text\":\"hi\",\"seconds\":0}",
        "{\"cmd\":\"message\",\"text\":\"hi\",\"seconds\":3601}",
        "{\"cmd\":\"message\",\"text\":\"hi\",\"seconds\":\"5\"}",
    };
    m.agent_err = 0;
    m.text[0] = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vmm_control_handle(c, &agent_ops, &m, bad[i], &r);
        assert_false(parse(r).ok);
        free(r);
    }
    assert_string_equal(m.text, ""); /* none reached the agent */
    assert_int_equal(vmm_request_format_message("", 5, line, sizeof(line)), -EINVAL);
    assert_int_equal(vmm_request_format_message("\xff", 5, line, sizeof(line)), -EINVAL);
    assert_int_equal(vmm_request_format_message("hi", 0, line, sizeof(line)), -EINVAL);
    assert_int_equal(vmm_request_format_message("hi", 5, line, 10), -ENOSPC);
}

static void test_client_parser(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "nope",
        "[]",
        "{}",
        "{\"event\":7}",
        "{\"ok\":1}",
        "{\"ok\":true,\"state\":\"dancing\"}",
        "{\"ok\":true,\"state\":\"running\",\"ready\":1}",
        "{\"ok\":true,\"state\":\"running\",\"vcpus\":-1}",
        "{\"ok\":false,\"error\":[]}",
        "{\"event\":\"ready\",\"reason\":5}",
        "{\"ok\":true,\"state\":\"running\",\"agent\":[]}",
        "{\"ok\":true,\"state\":\"running\",\"agent\":{\"up\":1}}",
        "{\"ok\":true,\"state\":\"running\",\"agent\":{\"heartbeat_s\":9999}}",
    };
    struct vmm_msg m;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(vmm_msg_parse(bad[i], strlen(bad[i]), &m), -EPROTO);
    for (int ev = 0; ev < VMM_EVENT_COUNT; ev++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"event\":\"%s\",\"reason\":\"r%d\"}",
                 vmm_event_name((enum vmm_event)ev), ev);
        m = parse(line);
        assert_int_equal(m.kind, VMM_MSG_EVENT);
        assert_int_equal(m.event, ev);
        assert_int_equal(m.reason[1] - '0', ev);
    }
    m = parse("{\"event\":\"from-the-future\"}");
    assert_int_equal(m.event, VMM_EVENT_UNKNOWN);
    assert_null(vmm_event_name(VMM_EVENT_UNKNOWN));
    assert_string_equal(vmm_exit_status_str(VMM_EXIT_CRASHED), "the guest crashed");
    assert_string_equal(vmm_exit_status_str(99), "unknown exit status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quit_is_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_do_not_quit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commands_need_a_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_says_ready_after_first_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_reach_the_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_requests, setup, teardown),
        cmocka_unit_test(test_client_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
