//! The web console under `/console`: server-rendered pages (maud) over the admin use cases, for
//! people: the directory, its federated credentials (added, edited and deleted with the
//! registry's own validation shown beside the field), the logs with the diagnosis of a failed
//! sign-in, and the dry run.
//!
//! Sign-in is a one-time link (`ficus console`, through `POST /ficus/console/links`) that opens a
//! session cookie (`__Host-`, `HttpOnly`, `Secure`, `SameSite=Strict`); see
//! `service::console`. Every form carries the session's CSRF secret; a Reader's session shows no
//! control that changes anything and is refused if it posts anyway. Every answer carries a strict
//! Content-Security-Policy (no script at all), `X-Frame-Options: DENY` and
//! `Referrer-Policy: no-referrer`.

mod pages;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;

use super::AppState;
use super::admin::AdminCaller;
use super::error::ApiError;
use crate::domain::activity::{ActivityQuery, Outcome};
use crate::domain::federated_credential::{CredentialError, CredentialOwner};
use crate::domain::keys::KeyAdministration;
use crate::domain::sign_in::SignInQuery;
use crate::service::admin::{AdminError, AdminService, CredentialInput};
use crate::service::admin_auth::AuthError;
use crate::service::console::{ConsoleError, ConsoleRole, ConsoleService, ConsoleSession, LINK_LIFETIME};
use crate::service::discovery::DiscoveryService;
use crate::service::token::TokenService;

/// The session cookie. `__Host-`: the browser keeps it only if it is `Secure`, for `/`, from
/// this host.
const COOKIE: &str = "__Host-ficus-console";

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ficus/console/links", post(create_link))
        .route("/console", get(|| async { Redirect::to("/console/applications") }))
        .route("/console/", get(|| async { Redirect::to("/console/applications") }))
        .route("/console/sign-in", get(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/applications", get(applications))
        .route("/console/applications/{app}", get(application))
        .route("/console/applications/{app}/credentials", post(add_credential))
        .route("/console/applications/{app}/credentials/{credential}/edit", get(edit_credential))
        .route("/console/applications/{app}/credentials/{credential}", post(update_credential))
        .route("/console/applications/{app}/credentials/{credential}/delete", post(delete_credential))
        .route("/console/applications/{app}/explain", get(dry_run).post(explain))
        .route("/console/identities", get(identities))
        .route("/console/sign-ins", get(sign_ins))
        .route("/console/activity", get(activity))
        .route("/console/keys", get(keys))
        .route("/console/keys/rotate", post(rotate_keys))
        .layer(axum::middleware::map_response(secure_headers))
}

/// The console's answers (and the link endpoint's) get the strict headers.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("console.css"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// `Ficus.Reader` or `Ficus.Admin`; the highest role the caller holds when left out.
    role: Option<String>,
}

/// `POST /ficus/console/links`: a one-time sign-in link for the caller (a Reader may ask).
async fn create_link(
    AdminCaller(caller): AdminCaller,
    State(console): State<Arc<ConsoleService>>,
    State(discovery): State<Arc<DiscoveryService>>,
    super::admin::AdminJson(body): super::admin::AdminJson<LinkRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let invalid = |m: String| ApiError::InvalidBody(super::error::Shape::Arm, m);
    let roles = match body.role.as_deref() {
        Some(raw) => {
            vec![ConsoleRole::parse(raw).ok_or_else(|| invalid("role must be Ficus.Reader or Ficus.Admin".into()))?]
        }
        None => vec![ConsoleRole::Admin, ConsoleRole::Reader],
    };
    let mut refused = AuthError::Forbidden(ConsoleRole::Reader.app_role());
    for role in roles {
        match console.link_code(&caller, role) {
            Ok(code) => {
                let url = format!("{}/console/sign-in?code={}", discovery.base_url(), code.expose());
                return Ok(Json(serde_json::json!({
                    "url": url, "role": role.app_role(), "expiresInSeconds": LINK_LIFETIME.as_secs(),
                })));
            }
            Err(ConsoleError::RoleNotHeld(role)) => refused = AuthError::Forbidden(role),
            Err(e) => return Err(invalid(e.to_string())),
        }
    }
    Err(ApiError::Auth(super::error::Shape::Arm, refused))
}

/// The signed-in console user of a page.
pub struct ConsoleUser(pub ConsoleSession);

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE)
            .map(|c| c.value().to_owned());
        state.console.session(cookie.as_deref()).map(ConsoleUser).map_err(|e| {
            tracing::info!(reason = %e, path = parts.uri.path(), "console request without a valid session");
            refused(StatusCode::UNAUTHORIZED, &e.to_string())
        })
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, Html(pages::message("Not signed in", message).into_string())).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SignInQueryString {
    code: Option<String>,
}

/// Opens the link: sets the session cookie and moves on to the console. (A meta refresh, not a
/// redirect: a `SameSite=Strict` cookie set in answer to a link followed from elsewhere is sent
/// only once the browser navigates from this site.)
async fn sign_in(State(console): State<Arc<ConsoleService>>, Query(query): Query<SignInQueryString>) -> Response {
    let opened = console.open_session(query.code.as_deref().unwrap_or_default());
    let session = match opened {
        Ok(session) => session,
        Err(e) => {
            tracing::info!(reason = %e, "console sign-in refused");
            let status = if matches!(e, ConsoleError::Signing(_)) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            return (status, Html(pages::message("Sign-in refused", &e.to_string()).into_string())).into_response();
        }
    };
    let cookie = cookie::Cookie::build((COOKIE, session.expose().to_owned()))
        .path("/")
        .secure(true)
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(crate::service::console::SESSION_LIFETIME.as_secs()).unwrap_or(28_800),
        ))
        .build();
    ([(header::SET_COOKIE, cookie.to_string())], Html(pages::signed_in("/console/applications").into_string()))
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(ConsoleUser(session): ConsoleUser, Form(form): Form<CsrfOnly>) -> Response {
    if !session.csrf_matches(&form.csrf) {
        return csrf_refused();
    }
    let gone = cookie::Cookie::build((COOKIE, "")).path("/").secure(true).http_only(true).removal().build();
    ([(header::SET_COOKIE, gone.to_string())], Html(pages::message("Signed out", "You are signed out.").into_string()))
        .into_response()
}

fn csrf_refused() -> Response {
    let message = "The form did not carry this session's CSRF token: reload the page and submit it again.";
    (StatusCode::FORBIDDEN, Html(pages::message("Refused", message).into_string())).into_response()
}

/// Why a change is refused, if it is: it needs the form's CSRF token and an Admin session.
fn refuse_change(session: &ConsoleSession, csrf: &str) -> Option<Response> {
    if !session.csrf_matches(csrf) {
        return Some(csrf_refused());
    }
    if !session.may_change() {
        let message = "A Reader's session changes nothing: ask for an admin link (`ficus console`).";
        return Some((StatusCode::FORBIDDEN, Html(pages::message("Refused", message).into_string())).into_response());
    }
    None
}

fn admin_failure(error: AdminError) -> Response {
    let status = match &error {
        AdminError::NotFound { .. } | AdminError::InvalidId(_) => StatusCode::NOT_FOUND,
        AdminError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Html(pages::message("Not possible", &error.to_string()).into_string())).into_response()
}

async fn applications(ConsoleUser(session): ConsoleUser, State(admin): State<Arc<AdminService>>) -> Html<String> {
    let apps = admin.list_applications(&session.caller);
    let rows: Vec<_> = apps
        .iter()
        .map(|app| {
            let count = admin.credentials(CredentialOwner::Application(app.object_id)).len();
            (app.clone(), count)
        })
        .collect();
    Html(pages::applications(&session, &rows).into_string())
}

/// The application page, its credential form as given (with `status`: 422 for a form being
/// corrected).
fn app_page(
    session: &ConsoleSession,
    admin: &AdminService,
    id: &str,
    form: pages::CredentialForm,
    status: StatusCode,
) -> Response {
    let app = match admin.application(&session.caller, id, false) {
        Ok(app) => app,
        Err(e) => return admin_failure(e),
    };
    let credentials = admin.credentials(CredentialOwner::Application(app.object_id));
    let view = admin.directory().view();
    let assignments = match admin.role_assignments_on(&session.caller, app.service_principal_id) {
        Ok(assignments) => assignments,
        Err(e) => return admin_failure(e),
    };
    let holders: Vec<(String, String)> = assignments
        .iter()
        .map(|a| {
            let role = app.role(a.app_role_id).map(|r| r.value.as_str().to_owned()).unwrap_or_default();
            (role, pages::principal_name(&view, session.caller.tenant, a.principal))
        })
        .collect();
    (status, Html(pages::application(session, &app, &credentials, &holders, &form).into_string())).into_response()
}

async fn application(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
) -> Response {
    app_page(&session, &admin, &app, pages::CredentialForm::default(), StatusCode::OK)
}

#[derive(Debug, Default, Deserialize)]
pub struct CredentialFormBody {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    expression: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    description: String,
}

impl CredentialFormBody {
    fn input(&self) -> CredentialInput {
        let given = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        CredentialInput {
            name: self.name.trim().to_owned(),
            issuer: self.issuer.trim().to_owned(),
            subject: given(&self.subject),
            expression: given(&self.expression).map(|e| (e, crate::domain::claims_expression::LANGUAGE_VERSION)),
            audiences: given(&self.audience).map(|a| vec![a]),
            description: given(&self.description),
        }
    }

    fn form(&self, editing: Option<String>, error: Option<AdminError>) -> pages::CredentialForm {
        let (field, message) = match error {
            Some(e) => (field_of(&e), Some(e.to_string())),
            None => (None, None),
        };
        pages::CredentialForm {
            editing,
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
            expression: self.expression.clone(),
            audience: self.audience.clone(),
            description: self.description.clone(),
            error_field: field,
            error: message,
        }
    }
}

/// The form field an error is about; `None`: the form as a whole (the limit of 20).
fn field_of(error: &AdminError) -> Option<&'static str> {
    let AdminError::Credential(e) = error else { return None };
    Some(match e {
        CredentialError::InvalidName(_) | CredentialError::DuplicateName(_) | CredentialError::NameIsImmutable => {
            "name"
        }
        CredentialError::InvalidIssuer(_) => "issuer",
        CredentialError::InvalidSubject
        | CredentialError::DuplicateIssuerSubject
        | CredentialError::SubjectAndExpression
        | CredentialError::NoSubjectOrExpression => "subject",
        CredentialError::InvalidExpression(_) => "expression",
        CredentialError::AudienceCount(_) | CredentialError::InvalidAudience => "audience",
        CredentialError::DescriptionTooLong => "description",
        CredentialError::LimitReached => return None,
    })
}

/// The application page again, with the form as given and the error beside its field (422).
fn form_refused(session: &ConsoleSession, admin: &AdminService, app: &str, form: pages::CredentialForm) -> Response {
    app_page(session, admin, app, form, StatusCode::UNPROCESSABLE_ENTITY)
}

async fn add_credential(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
    Form(body): Form<CredentialFormBody>,
) -> Response {
    let id = match changed_application(&session, &admin, &app, &body.csrf) {
        Ok(id) => id,
        Err(refusal) => return *refusal,
    };
    match admin.add_credential(&session.caller, CredentialOwner::Application(id), body.input()).await {
        Ok(_) => back_to_credentials(id),
        Err(e) => form_refused(&session, &admin, &app, body.form(None, Some(e))),
    }
}

async fn edit_credential(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Path((app, credential)): Path<(String, String)>,
) -> Response {
    let found = admin
        .application(&session.caller, &app, false)
        .and_then(|a| admin.credential(CredentialOwner::Application(a.object_id), &credential));
    let credential = match found {
        Ok(c) => c,
        Err(e) => return admin_failure(e),
    };
    let form = pages::CredentialForm::of(&credential);
    app_page(&session, &admin, &app, form, StatusCode::OK)
}

async fn update_credential(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Path((app, credential)): Path<(String, String)>,
    Form(body): Form<CredentialFormBody>,
) -> Response {
    let id = match changed_application(&session, &admin, &app, &body.csrf) {
        Ok(id) => id,
        Err(refusal) => return *refusal,
    };
    match admin.update_credential(&session.caller, CredentialOwner::Application(id), &credential, body.input()).await {
        Ok(_) => back_to_credentials(id),
        Err(e) => form_refused(&session, &admin, &app, body.form(Some(credential), Some(e))),
    }
}

async fn delete_credential(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Path((app, credential)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let id = match changed_application(&session, &admin, &app, &form.csrf) {
        Ok(id) => id,
        Err(refusal) => return *refusal,
    };
    match admin.delete_credential(&session.caller, CredentialOwner::Application(id), &credential).await {
        Ok(()) => back_to_credentials(id),
        Err(e) => admin_failure(e),
    }
}

/// The object id of the application a change is for, or the answer refusing it (no CSRF token, a
/// Reader's session, no such application).
fn changed_application(
    session: &ConsoleSession,
    admin: &AdminService,
    app: &str,
    csrf: &str,
) -> Result<crate::domain::ids::ObjectId, Box<Response>> {
    if let Some(refusal) = refuse_change(session, csrf) {
        return Err(Box::new(refusal));
    }
    admin.application(&session.caller, app, false).map(|found| found.object_id).map_err(|e| Box::new(admin_failure(e)))
}

/// After a change: the application's credentials (by its object id, never by what the path said).
fn back_to_credentials(application: crate::domain::ids::ObjectId) -> Response {
    Redirect::to(&format!("/console/applications/{application}#credentials")).into_response()
}

async fn dry_run(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Path(app): Path<String>,
) -> Response {
    match admin.application(&session.caller, &app, false) {
        Ok(found) => Html(pages::dry_run(&session, &found, None).into_string()).into_response(),
        Err(e) => admin_failure(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct ExplainForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    assertion: String,
    #[serde(default)]
    resource: String,
}

/// The dry run (a Reader may run it: it changes nothing).
async fn explain(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    State(tokens): State<Arc<TokenService>>,
    Path(app): Path<String>,
    Form(form): Form<ExplainForm>,
) -> Response {
    if !session.csrf_matches(&form.csrf) {
        return csrf_refused();
    }
    let client = match admin.application(&session.caller, &app, false) {
        Ok(found) => found,
        Err(e) => return admin_failure(e),
    };
    let resource = Some(form.resource.trim()).filter(|r| !r.is_empty());
    let report = tokens.explain(session.caller.tenant, &client, form.assertion.trim(), resource).await;
    let explained = pages::Explained::of(&report, form.resource.trim());
    Html(pages::dry_run(&session, &client, Some(&explained)).into_string()).into_response()
}

async fn identities(ConsoleUser(session): ConsoleUser, State(admin): State<Arc<AdminService>>) -> Html<String> {
    let view = admin.directory().view();
    Html(pages::identities(&session, &view).into_string())
}

/// The sign-in log's filters, as the form sends them (empty: no filter).
#[derive(Debug, Default, Deserialize)]
pub struct SignInFilters {
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub principal: String,
    #[serde(default)]
    pub application: String,
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub result: String,
    #[serde(default)]
    pub code: String,
}

/// The newest entries the page reads; filters beyond time, principal and result apply to them.
const SIGN_IN_WINDOW: usize = 1000;

async fn sign_ins(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    Query(filters): Query<SignInFilters>,
) -> Response {
    let (since, until) = match (pages::form_time(&filters.since), pages::form_time(&filters.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            let page = pages::sign_ins(&session, &filters, &[], Some(&e));
            return (StatusCode::BAD_REQUEST, Html(page.into_string())).into_response();
        }
    };
    let view = admin.directory().view();
    let principal = pages::principal_filter(&view, session.caller.tenant, &filters.principal);
    let query = SignInQuery {
        tenant_id: session.caller.tenant,
        since,
        until,
        principal_id: principal,
        outcome: Outcome::parse(&filters.result),
        limit: SIGN_IN_WINDOW,
        after: None,
    };
    if !filters.principal.trim().is_empty() && principal.is_none() {
        return Html(pages::sign_ins(&session, &filters, &[], None).into_string()).into_response();
    }
    match admin.sign_ins(&query).await {
        Ok(page) => {
            let entries: Vec<_> = page.entries.into_iter().filter(|e| pages::keeps(&filters, e)).collect();
            Html(pages::sign_ins(&session, &filters, &entries, None).into_string()).into_response()
        }
        Err(e) => admin_failure(e),
    }
}

async fn activity(ConsoleUser(session): ConsoleUser, State(admin): State<Arc<AdminService>>) -> Response {
    let query = ActivityQuery {
        tenant_id: session.caller.tenant,
        since: None,
        until: None,
        target: None,
        limit: 200,
        after: None,
    };
    match admin.activity(&query).await {
        Ok(page) => Html(pages::activity(&session, &page.entries).into_string()).into_response(),
        Err(e) => admin_failure(e),
    }
}

async fn keys(ConsoleUser(session): ConsoleUser, State(keys): State<Arc<dyn KeyAdministration>>) -> Html<String> {
    Html(pages::keys(&session, &keys.statuses(), None).into_string())
}

#[derive(Debug, Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    /// `scheduled` (sign after keys.prepublish) or `now`.
    #[serde(default)]
    when: String,
    /// Rotating now needs this box ticked.
    #[serde(default)]
    understood: Option<String>,
}

async fn rotate_keys(
    ConsoleUser(session): ConsoleUser,
    State(admin): State<Arc<AdminService>>,
    State(keys): State<Arc<dyn KeyAdministration>>,
    Form(form): Form<RotateForm>,
) -> Response {
    if let Some(refusal) = refuse_change(&session, &form.csrf) {
        return refusal;
    }
    let now = form.when == "now";
    if now && form.understood.is_none() {
        let message =
            "Tick the box: rotating now means tokens signed from now on verify only where the new key is known.";
        let page = pages::keys(&session, &keys.statuses(), Some(message));
        return (StatusCode::UNPROCESSABLE_ENTITY, Html(page.into_string())).into_response();
    }
    match admin.rotate_keys(&session.caller, keys.as_ref(), now).await {
        Ok(_) => Redirect::to("/console/keys").into_response(),
        Err(e) => admin_failure(e),
    }
}
