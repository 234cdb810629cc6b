//! The console's pages, rendered with maud: one layout (skip link, navigation, one `h1`, `h2`s
//! below it), labelled form fields with their errors beside them (`aria-describedby`), tables
//! with header cells, and the sign-in chart as server-rendered SVG. No script.

use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::SignInFilters;
use crate::domain::activity::{ActivityEntry, Outcome};
use crate::domain::application::Application;
use crate::domain::directory::DirectoryView;
use crate::domain::federated_credential::{CredentialOwner, FederatedCredential, MAX_PER_OWNER};
use crate::domain::ids::{ClientId, ObjectId};
use crate::domain::resource::ResourceKind;
use crate::domain::role_assignment::Principal;
use crate::domain::sign_in::SignIn;
use crate::domain::tenant::TenantId;
use crate::service::console::ConsoleSession;
use crate::service::token::Explanation;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Applications,
    Identities,
    SignIns,
    Activity,
    Keys,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Applications, "/console/applications", "Applications"),
    (Section::Identities, "/console/identities", "Identities and resources"),
    (Section::SignIns, "/console/sign-ins", "Sign-ins"),
    (Section::Activity, "/console/activity", "Activity"),
    (Section::Keys, "/console/keys", "Signing keys"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ficus console" }
            link rel="stylesheet" href="/console/static/console.css";
        }
    }
}

fn layout(session: &ConsoleSession, section: Section, title: &str, body: Markup) -> Markup {
    let role = if session.may_change() { "Admin" } else { "Reader" };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to the content" }
                header {
                    p.brand { "ficus console" }
                    nav aria-label="Console sections" {
                        ul {
                            @for (s, href, label) in SECTIONS {
                                li { a href=(href) aria-current=[(s == section).then_some("page")] { (label) } }
                            }
                        }
                    }
                    div.who {
                        span { "Signed in as " strong { (session.caller.actor.display_name) } " (" (role) ")" }
                        form method="post" action="/console/sign-out" {
                            (csrf(session))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn csrf(session: &ConsoleSession) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A page with a message and no session (sign-in refused, signed out, refused form).
pub fn message(title: &str, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                main id="main" {
                    h1 { (title) }
                    p.notice role="alert" { (text) }
                    p { a href="/console/applications" { "Back to the console" } }
                }
            }
        }
    }
}

/// The page a sign-in link answers: the cookie is set; the browser moves on.
pub fn signed_in(target: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(format!("0;url={target}"));
                title { "Signed in · ficus console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                main id="main" {
                    h1 { "Signed in" }
                    p { a href=(target) { "Open the console" } }
                }
            }
        }
    }
}

pub fn applications(session: &ConsoleSession, rows: &[(std::sync::Arc<Application>, usize)]) -> Markup {
    let body = html! {
        table {
            caption { (rows.len()) " applications" }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Application (client) id" } th scope="col" { "Identifier URIs" } th scope="col" { "App roles" } th scope="col" { "Federated credentials" } } }
            tbody {
                @for (app, count) in rows {
                    tr {
                        th scope="row" { a href=(format!("/console/applications/{}", app.object_id)) { (app.display_name.as_str()) } }
                        td { code { (app.app_id) } }
                        td { @for uri in &app.identifier_uris { code { (uri.as_str()) } " " } }
                        td { @for role in &app.app_roles { code { (role.value.as_str()) } " " } }
                        td { (count) " of " (MAX_PER_OWNER) }
                    }
                }
            }
        }
    };
    layout(session, Section::Applications, "Applications", body)
}

/// The federated-credential form: empty to add one, filled to edit one or to correct what was
/// refused (`error` beside `error_field`, or above the form when it is about the form).
#[derive(Debug, Default, Clone)]
pub struct CredentialForm {
    /// The credential being edited (its id); `None` to add.
    pub editing: Option<String>,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub expression: String,
    pub audience: String,
    pub description: String,
    pub error_field: Option<&'static str>,
    pub error: Option<String>,
}

impl CredentialForm {
    pub fn of(c: &FederatedCredential) -> Self {
        Self {
            editing: Some(c.id.to_string()),
            name: c.name.as_str().to_owned(),
            issuer: c.issuer.as_str().to_owned(),
            subject: c.matching.subject().unwrap_or_default().to_owned(),
            expression: c.matching.expression().map(|e| e.text().to_owned()).unwrap_or_default(),
            audience: c.audience.as_str().to_owned(),
            description: c.description.clone().unwrap_or_default(),
            error_field: None,
            error: None,
        }
    }

    fn error_for(&self, field: &str) -> Option<&str> {
        (self.error_field == Some(field)).then_some(self.error.as_deref()).flatten()
    }

    fn form_error(&self) -> Option<&str> {
        self.error_field.is_none().then_some(self.error.as_deref()).flatten()
    }
}

/// One labelled input with its error beside it.
fn field(form: &CredentialForm, name: &'static str, label: &str, value: &str, hint: &str) -> Markup {
    let id = format!("credential-{name}");
    let error = form.error_for(name);
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    html! {
        div.field.invalid[error.is_some()] {
            label for=(id) { (label) }
            @if name == "expression" {
                textarea id=(id) name=(name) rows="2" aria-describedby=(described) aria-invalid=[error.map(|_| "true")] { (value) }
            } @else {
                input id=(id) name=(name) type="text" value=(value) aria-describedby=(described) aria-invalid=[error.map(|_| "true")] readonly[name == "name" && form.editing.is_some()];
            }
            p.hint id=(hint_id) { (hint) }
            @if let Some(error) = error { p.error id=(error_id) { (error) } }
        }
    }
}

/// One credential's verdict in the dry run: each check's explanation and whether it holds.
pub struct Verdict {
    pub name: String,
    pub matches: bool,
    pub checks: Vec<(String, bool)>,
}

/// What the dry run showed, ready to render.
pub struct Explained {
    pub resource: String,
    pub assertion: Result<String, String>,
    pub credentials: Vec<Verdict>,
    pub matched: Option<String>,
    pub error: Option<String>,
    pub roles: Option<Result<Vec<String>, String>>,
}

impl Explained {
    pub fn of(report: &Explanation, resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            assertion: match &report.assertion {
                Ok(a) => Ok(format!("issuer {}, subject {}, audience {}", a.issuer, a.subject, a.audiences.join(", "))),
                Err(e) => Err(e.to_string()),
            },
            credentials: report
                .credentials
                .iter()
                .map(|(c, checks)| Verdict {
                    name: c.name.as_str().to_owned(),
                    matches: checks.iter().all(|check| check.holds),
                    checks: checks.iter().map(|check| (check.to_string(), check.holds)).collect(),
                })
                .collect(),
            matched: report.matched.clone(),
            error: report.error.as_ref().map(crate::http::error::token_error_text),
            roles: report.roles.as_ref().map(|r| match r {
                Ok(roles) => Ok(roles.clone()),
                Err(e) => Err(crate::http::error::token_error_text(e)),
            }),
        }
    }
}

/// The dry-run page: the form, and what the token endpoint would do with what was pasted.
pub fn dry_run(session: &ConsoleSession, app: &Application, result: Option<&Explained>) -> Markup {
    let base = format!("/console/applications/{}", app.object_id);
    let body = html! {
        p { "For " a href=(base) { (app.display_name.as_str()) } ": the assertion is verified exactly as for a token \
             (signature, issuer trust, times) and compared with every federated credential; nothing is issued or logged." }
        form.explain method="post" action=(format!("{base}/explain")) {
            (csrf(session))
            div.field {
                label for="explain-assertion" { "Assertion (a JWT)" }
                textarea id="explain-assertion" name="assertion" rows="5" aria-describedby="explain-assertion-hint" {}
                p.hint id="explain-assertion-hint" { "What the workload would send as client_assertion or subject_token." }
            }
            div.field {
                label for="explain-resource" { "Resource (optional)" }
                input id="explain-resource" name="resource" type="text" aria-describedby="explain-resource-hint";
                p.hint id="explain-resource-hint" { "To see the roles the token would carry (api://vault)." }
            }
            button type="submit" { "Explain" }
        }
        @if let Some(x) = result { (explained(x)) }
    };
    layout(session, Section::Applications, &format!("Dry run: {}", app.display_name.as_str()), body)
}

pub fn application(
    session: &ConsoleSession,
    app: &Application,
    credentials: &[FederatedCredential],
    holders: &[(String, String)],
    form: &CredentialForm,
) -> Markup {
    let base = format!("/console/applications/{}", app.object_id);
    let body = html! {
        dl.facts {
            dt { "Application (client) id" } dd { code { (app.app_id) } }
            dt { "Object id" } dd { code { (app.object_id) } }
            dt { "Service principal id" } dd { code { (app.service_principal_id) } }
            dt { "Identifier URIs" } dd { @for uri in &app.identifier_uris { code { (uri.as_str()) } " " } @if app.identifier_uris.is_empty() { "none" } }
        }
        section aria-labelledby="roles" {
            h2 id="roles" { "App roles and who holds them" }
            @if app.app_roles.is_empty() { p { "This application defines no app roles." } } @else {
                table {
                    thead { tr { th scope="col" { "Role" } th scope="col" { "Description" } th scope="col" { "Held by" } } }
                    tbody {
                        @for role in &app.app_roles {
                            tr {
                                th scope="row" { code { (role.value.as_str()) } }
                                td { (role.description) }
                                td { @for (_, who) in holders.iter().filter(|(v, _)| v == role.value.as_str()) { span.holder { (who) } " " } }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="credentials" {
            h2 id="credentials" { "Federated credentials " span.count { "(" (credentials.len()) " of " (MAX_PER_OWNER) ")" } }
            @if credentials.is_empty() { p { "No federated credentials: nothing can sign in as this application with an assertion." } } @else {
                table.credentials {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Issuer" } th scope="col" { "Subject or expression" } th scope="col" { "Audience" } @if session.may_change() { th scope="col" { "Actions" } } } }
                    tbody {
                        @for c in credentials {
                            tr {
                                th scope="row" { (c.name.as_str()) }
                                td { code { (c.issuer.as_str()) } }
                                td { @match c.matching.subject() { Some(s) => code { (s) }, None => code { (c.matching.expression().map(|e| e.text()).unwrap_or_default()) } } }
                                td { code { (c.audience.as_str()) } }
                                @if session.may_change() {
                                    td.actions {
                                        a href=(format!("{base}/credentials/{}/edit#credential-form", c.id)) aria-label=(format!("Edit {}", c.name.as_str())) { "Edit" }
                                        form method="post" action=(format!("{base}/credentials/{}/delete", c.id)) {
                                            (csrf(session))
                                            button type="submit" aria-label=(format!("Delete {}", c.name.as_str())) { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if session.may_change() {
                @let action = match &form.editing { Some(id) => format!("{base}/credentials/{id}"), None => format!("{base}/credentials") };
                form.credential id="credential-form" method="post" action=(action) aria-labelledby="credential-form-title" aria-describedby=[form.form_error().map(|_| "credential-form-error")] {
                    h3 id="credential-form-title" { @if form.editing.is_some() { "Edit " (form.name) } @else { "Add a federated credential" } }
                    @if let Some(error) = form.form_error() { p.error.form-error id="credential-form-error" role="alert" { (error) } }
                    (csrf(session))
                    (field(form, "name", "Name", &form.name, "3-120 letters, digits, '-' and '_'; it cannot change later."))
                    (field(form, "issuer", "Issuer", &form.issuer, "The assertion's iss, exactly (https://token.actions.githubusercontent.com)."))
                    (field(form, "subject", "Subject", &form.subject, "The assertion's sub, exactly; or leave empty and give an expression."))
                    (field(form, "expression", "Claims-matching expression", &form.expression, "Instead of a subject: claims['sub'] matches 'repo:org/*' and ..."))
                    (field(form, "audience", "Audience", &form.audience, "Empty: api://AzureADTokenExchange."))
                    (field(form, "description", "Description", &form.description, "Optional."))
                    button type="submit" { @if form.editing.is_some() { "Save changes" } @else { "Add credential" } }
                    @if form.editing.is_some() { " " a href=(format!("{base}#credentials")) { "Cancel" } }
                }
            }
        }
        section aria-labelledby="dry-run" {
            h2 id="dry-run" { "Dry run" }
            p { a href=(format!("{base}/explain")) { "What would the token endpoint do with an assertion?" } }
        }
    };
    layout(session, Section::Applications, app.display_name.as_str(), body)
}

fn explained(x: &Explained) -> Markup {
    html! {
        section.result aria-labelledby="dry-run-result" {
            h2 id="dry-run-result" { "Result" }
            @match &x.assertion {
                Ok(summary) => p { "The assertion verifies: " (summary) "." },
                Err(reason) => p.error { "The assertion does not verify: " (reason) },
            }
            @match (&x.matched, &x.error) {
                (Some(name), _) => p.ok { "A token would be issued: credential " strong { (name) } " matches." },
                (None, Some(error)) => p.error { "Refused: " (error) },
                (None, None) => p { "No credential was compared." },
            }
            @if !x.credentials.is_empty() {
                ul.checks {
                    @for v in &x.credentials {
                        li {
                            strong { (v.name) } @if v.matches { " matches" } @else { " does not match" }
                            ul { @for (text, holds) in &v.checks { li.ok[*holds].error[!*holds] { (text) } } }
                        }
                    }
                }
            }
            @if let Some(roles) = &x.roles {
                @match roles {
                    Ok(roles) => p { "Roles on " code { (x.resource) } ": " @if roles.is_empty() { "none" } @else { (roles.join(", ")) } },
                    Err(e) => p.error { (e) },
                }
            }
        }
    }
}

/// A principal's name as the console shows it.
pub fn principal_name(view: &DirectoryView, tenant: TenantId, principal: Principal) -> String {
    match principal {
        Principal::Application(sp) => {
            view.application_by_sp(tenant, sp).map_or_else(|| sp.to_string(), |a| a.display_name.as_str().to_owned())
        }
        Principal::Identity(id) => {
            view.identity(id).map_or_else(|| id.to_string(), |i| i.resource_id.name().to_owned())
        }
    }
}

/// The roles a principal holds, as "application: role".
fn roles_of(view: &DirectoryView, tenant: TenantId, principal: ObjectId) -> Vec<String> {
    view.role_assignments_of(principal)
        .filter_map(|a| {
            let app = view.application_by_sp(tenant, a.resource_id)?;
            Some(format!("{}: {}", app.display_name.as_str(), app.role(a.app_role_id)?.value.as_str()))
        })
        .collect()
}

pub fn identities(session: &ConsoleSession, view: &DirectoryView) -> Markup {
    let tenant = session.caller.tenant;
    let (identities, resources) = view.tenant_resources(tenant);
    let body = html! {
        section aria-labelledby="user-assigned" {
            h2 id="user-assigned" { "User-assigned identities" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Client id" } th scope="col" { "Roles held" } th scope="col" { "Federated credentials" } th scope="col" { "Carried by" } } }
                tbody {
                    @for i in &identities {
                        tr {
                            th scope="row" { (i.resource_id.name()) }
                            td { code { (i.client_id) } }
                            td { (list(&roles_of(view, tenant, i.principal_id))) }
                            td { (view.credentials(CredentialOwner::Identity(i.principal_id)).len()) " of " (MAX_PER_OWNER) }
                            td { (list(&resources.iter().filter(|r| r.user_identities.contains(&i.resource_id)).map(|r| r.id.name().to_owned()).collect::<Vec<_>>())) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="compute" {
            h2 id="compute" { "Compute resources" }
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Identities" } th scope="col" { "System identity's roles" } th scope="col" { "Networks" } } }
                tbody {
                    @for r in &resources {
                        tr {
                            th scope="row" { (r.id.name()) }
                            td { (match r.id.kind() { ResourceKind::VirtualMachine => "virtual machine", ResourceKind::WebApp => "web app", ResourceKind::WebAppSlot => "web app slot", ResourceKind::UserAssignedIdentity => "identity" }) }
                            td { (list(&carried(r))) }
                            td { (list(&r.system_identity.as_ref().map(|s| roles_of(view, tenant, s.principal_id)).unwrap_or_default())) }
                            td { (list(&r.addresses.iter().map(ToString::to_string).collect::<Vec<_>>())) }
                        }
                    }
                }
            }
        }
    };
    layout(session, Section::Identities, "Identities and resources", body)
}

/// The identities a compute resource carries, the system-assigned one first.
fn carried(r: &crate::domain::resource::ComputeResource) -> Vec<String> {
    let system = r.system_identity.as_ref().map(|_| "system-assigned".to_owned());
    system.into_iter().chain(r.user_identities.iter().map(|u| format!("{} (user-assigned)", u.name()))).collect()
}

fn list(items: &[String]) -> Markup {
    html! {
        @if items.is_empty() { span.none { "none" } } @else { ul.inline { @for item in items { li { (item) } } } }
    }
}

/// A time from the filter form: RFC 3339, or the `datetime-local` form (read as UTC).
pub fn form_time(raw: &str) -> Result<Option<OffsetDateTime>, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(Some(t));
    }
    let with_seconds = if raw.len() == 16 { format!("{raw}:00Z") } else { format!("{raw}Z") };
    OffsetDateTime::parse(&with_seconds, &Rfc3339)
        .map(Some)
        .map_err(|_| format!("'{raw}' is not a time: use 2026-11-29T14:00 (UTC) or RFC 3339"))
}

/// The principal a filter names: an object id, a client id or a name (application or identity).
pub fn principal_filter(view: &DirectoryView, tenant: TenantId, raw: &str) -> Option<ObjectId> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Some(principal) = ClientId::parse(raw).ok().and_then(|client| view.principal_of_client(tenant, client)) {
        return Some(principal);
    }
    if let Ok(id) = ObjectId::parse(raw) {
        return Some(id);
    }
    view.applications(tenant)
        .into_iter()
        .find(|a| a.display_name.as_str().eq_ignore_ascii_case(raw))
        .map(|a| a.service_principal_id)
        .or_else(|| view.identities_named(raw).first().map(|i| i.principal_id))
        .or_else(|| view.resources_named(raw).first().and_then(|r| r.system_identity.as_ref()).map(|s| s.principal_id))
}

/// Whether an entry passes the filters the store does not apply (application, resource, code).
pub fn keeps(filters: &SignInFilters, e: &SignIn) -> bool {
    let contains =
        |haystack: &str, needle: &str| haystack.to_ascii_lowercase().contains(&needle.trim().to_ascii_lowercase());
    let application = filters.application.trim();
    let code = filters.code.trim();
    (application.is_empty()
        || e.principal.client_id.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(application))
        || contains(&e.principal.name, application))
        && (filters.resource.trim().is_empty() || contains(&e.resource, &filters.resource))
        && (code.is_empty() || e.status_code.to_string() == code || e.error_code.eq_ignore_ascii_case(code))
}

pub fn sign_ins(session: &ConsoleSession, f: &SignInFilters, entries: &[SignIn], error: Option<&str>) -> Markup {
    let body = html! {
        form.filters method="get" action="/console/sign-ins" aria-label="Filter the sign-ins" {
            (filter_field("since", "From (UTC)", &f.since, "datetime-local"))
            (filter_field("until", "Until (UTC)", &f.until, "datetime-local"))
            (filter_field("principal", "Principal (name or id)", &f.principal, "text"))
            (filter_field("application", "Application (name or client id)", &f.application, "text"))
            (filter_field("resource", "Resource", &f.resource, "text"))
            div.field {
                label for="filter-result" { "Result" }
                select id="filter-result" name="result" {
                    option value="" selected[f.result.is_empty()] { "any" }
                    option value="success" selected[f.result == "success"] { "success" }
                    option value="failure" selected[f.result == "failure"] { "failure" }
                }
            }
            (filter_field("code", "Error code (700213, identity_not_found...)", &f.code, "text"))
            button type="submit" { "Filter" }
            " " a href="/console/sign-ins" { "Clear" }
        }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        section aria-labelledby="over-time" {
            h2 id="over-time" { "Sign-ins over time" }
            (chart(entries))
        }
        section aria-labelledby="entries" {
            h2 id="entries" { "Entries " span.count { "(" (entries.len()) ", newest first)" } }
            table.sign-ins {
                thead { tr { th scope="col" { "Time (UTC)" } th scope="col" { "Principal" } th scope="col" { "Kind" } th scope="col" { "Resource" } th scope="col" { "Result" } th scope="col" { "Requests" } } }
                tbody {
                    @for e in entries {
                        tr.failure[e.outcome == Outcome::Failure] {
                            td { (rfc3339(e.time)) }
                            td { (if e.principal.name.is_empty() { e.principal.client_id.clone().unwrap_or_else(|| "unknown".into()) } else { e.principal.name.clone() }) }
                            td { (e.kind.graph_event_type()) }
                            td { code { (e.resource) } }
                            td {
                                @if e.outcome == Outcome::Success { "success" } @else {
                                    details {
                                        summary { "failure " code { (e.status_code) } " " (e.error_code) }
                                        p.reason { (e.reason) }
                                    }
                                }
                            }
                            td { (e.count) }
                        }
                    }
                }
            }
        }
    };
    layout(session, Section::SignIns, "Sign-ins", body)
}

fn filter_field(name: &str, label: &str, value: &str, kind: &str) -> Markup {
    let id = format!("filter-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(kind) value=(value);
        }
    }
}

/// Sign-ins over the entries' time span in 24 slots, successes and failures stacked.
fn chart(entries: &[SignIn]) -> Markup {
    const SLOTS: usize = 24;
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 180.0;
    const BAR_AREA: f64 = 140.0;
    let (Some(first), Some(last)) = (entries.iter().map(|e| e.time).min(), entries.iter().map(|e| e.time).max()) else {
        return html! { p { "No sign-ins match." } };
    };
    let span = (last - first).whole_milliseconds().max(1) as f64;
    let mut slots = [(0u64, 0u64); SLOTS];
    for e in entries {
        let at = ((e.time - first).whole_milliseconds() as f64 / span * (SLOTS as f64 - 1.0)).round() as usize;
        let slot = &mut slots[at.min(SLOTS - 1)];
        match e.outcome {
            Outcome::Success => slot.0 += u64::from(e.count),
            Outcome::Failure => slot.1 += u64::from(e.count),
        }
    }
    let tallest = slots.iter().map(|(s, f)| s + f).max().unwrap_or(1).max(1) as f64;
    let (successes, failures): (u64, u64) = slots.iter().fold((0, 0), |(s, f), slot| (s + slot.0, f + slot.1));
    let slot_width = WIDTH / SLOTS as f64;
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-labelledby="chart-title chart-desc" {
                title id="chart-title" { "Sign-ins over time by result" }
                desc id="chart-desc" { (successes) " successful and " (failures) " failed requests from " (rfc3339(first)) " to " (rfc3339(last)) ", in 24 slots." }
                @for (i, (ok, failed)) in slots.iter().enumerate() {
                    @let x = i as f64 * slot_width + 2.0;
                    @let ok_height = *ok as f64 / tallest * BAR_AREA;
                    @let failed_height = *failed as f64 / tallest * BAR_AREA;
                    g {
                        title { (ok) " successful, " (failed) " failed" }
                        rect.success x=(x) y=(BAR_AREA - ok_height) width=(slot_width - 4.0) height=(ok_height) {}
                        rect.failure x=(x) y=(BAR_AREA - ok_height - failed_height) width=(slot_width - 4.0) height=(failed_height) {}
                    }
                }
                text x="0" y=(HEIGHT - 10.0) { (rfc3339(first)) }
                text x=(WIDTH) y=(HEIGHT - 10.0) text-anchor="end" { (rfc3339(last)) }
            }
            figcaption {
                span.key.success-key { "success (" (successes) ")" } " "
                span.key.failure-key { "failure (" (failures) ")" }
            }
        }
    }
}

pub fn activity(session: &ConsoleSession, entries: &[ActivityEntry]) -> Markup {
    let body = html! {
        table {
            caption { "The newest " (entries.len()) " changes" }
            thead { tr { th scope="col" { "Time (UTC)" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "Target" } th scope="col" { "Result" } } }
            tbody {
                @for e in entries {
                    tr.failure[e.outcome == Outcome::Failure] {
                        td { (rfc3339(e.time)) }
                        td { (e.actor.display_name) }
                        td { (e.operation) }
                        td { (e.target_type) ": " code { (e.target) } }
                        td { (e.outcome.as_str()) @if !e.reason.is_empty() { ": " (e.reason) } }
                    }
                }
            }
        }
    };
    layout(session, Section::Activity, "Activity", body)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default()
}

pub fn keys(session: &ConsoleSession, keys: &[crate::domain::keys::KeyStatus], error: Option<&str>) -> Markup {
    let body = html! {
        table {
            caption { "Keys in the JWKS now, and any retired ones still stored" }
            thead { tr { th scope="col" { "Key id" } th scope="col" { "Algorithm" } th scope="col" { "State" } th scope="col" { "Signs from (UTC)" } th scope="col" { "Published until (UTC)" } } }
            tbody {
                @for k in keys {
                    tr {
                        th scope="row" { code { (k.kid) } }
                        td { (k.alg) }
                        td { strong { (k.state) } }
                        td { (rfc3339(k.signs_from)) }
                        td { @match k.published_until { Some(t) => (rfc3339(t)), None => "while current or next" } }
                    }
                }
            }
        }
        @if session.may_change() {
            section aria-labelledby="rotate" {
                h2 id="rotate" { "Rotate" }
                form.credential method="post" action="/console/keys/rotate" {
                    (csrf(session))
                    input type="hidden" name="when" value="scheduled";
                    p { "Adds a key that is published at once and signs after keys.prepublish, so resource servers learn it first." }
                    button type="submit" { "Add the next key" }
                }
                form.credential method="post" action="/console/keys/rotate" aria-describedby=[error.map(|_| "rotate-now-error")] {
                    (csrf(session))
                    input type="hidden" name="when" value="now";
                    p { "For a suspected compromise: the new key signs at once; the old one stays published until its tokens expire." }
                    div.field.invalid[error.is_some()] {
                        input id="rotate-understood" type="checkbox" name="understood" value="yes";
                        " "
                        label.inline for="rotate-understood" { "I understand that resource servers reject new tokens until their JWKS caches refresh" }
                        @if let Some(error) = error { p.error id="rotate-now-error" role="alert" { (error) } }
                    }
                    button type="submit" { "Rotate now" }
                }
            }
        }
    };
    layout(session, Section::Keys, "Signing keys", body)
}
