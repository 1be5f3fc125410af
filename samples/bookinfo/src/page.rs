//! productpage's HTML, laid out as the original's templates: the index page with the service
//! table, and the product page with the navigation bar (sign in / the user and sign out), the
//! book summary, "Book Details" and "Book Reviews" (stars drawn as `<font color=…>` around
//! glyphicon spans), or the original's error texts when a service fails.

use std::fmt::Write;

use serde_json::Value;

/// The product Bookinfo shows.
pub(crate) const PRODUCT_TITLE: &str = "The Comedy of Errors";
const PRODUCT_SUMMARY: &str = "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play.";

pub(crate) const DETAILS_ERROR: &str = "Sorry, product details are currently unavailable for this book.";
pub(crate) const REVIEWS_ERROR: &str = "Sorry, product reviews are currently unavailable for this book.";

/// The product list of `/api/v1/products`.
pub(crate) fn products() -> Value {
    serde_json::json!([{"id": 0, "title": PRODUCT_TITLE, "descriptionHtml": PRODUCT_SUMMARY}])
}

/// Escapes text for HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&#34;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// The page up to its content, as the original's Flask-Bootstrap base template rendered it
/// (the blank lines are where its template tags were).
fn head(title: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html>
  <head>
    <title>{title}</title>
<meta charset="utf-8">
<meta http-equiv="X-UA-Compatible" content="IE=edge">
<meta name="viewport" content="width=device-width, initial-scale=1.0">

<!-- Latest compiled and minified CSS -->
<link rel="stylesheet" href="static/bootstrap/css/bootstrap.min.css">

<!-- Optional theme -->
<link rel="stylesheet" href="static/bootstrap/css/bootstrap-theme.min.css">

  </head>
  <body>
    
    
"#
    )
}

/// The page after its content: jQuery and Bootstrap's script, and the sign-in dialog's focus.
const FOOT: &str = r#"

    
<!-- Latest compiled and minified JavaScript -->
<script src="static/jquery.min.js"></script>

<!-- Latest compiled and minified JavaScript -->
<script src="static/bootstrap/js/bootstrap.min.js"></script>

<script type="text/javascript">
  $('#login-modal').on('shown.bs.modal', function () {
    $('#username').focus();
  });
</script>

  </body>
</html>
"#;

/// The index page (`/`): what Bookinfo is made of, and links to the product page.
pub(crate) fn index(services: &[(&str, String)]) -> String {
    let mut page = head("Simple Bookstore App");
    page.push_str(
        r#"<div class="container">
  <div class="row">
    <div class="col-md-12">
      <h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>
    </div>
  </div>
  <div class="row">
    <div class="col-md-12">
      <table class="table table-condensed table-bordered table-hover">
        <tr><th>name</th><th>endpoint</th><th>children</th></tr>
"#,
    );
    for (name, endpoint) in services {
        let _ = writeln!(page, "        <tr><td>{}</td><td>{}</td><td></td></tr>", escape(name), escape(endpoint));
    }
    page.push_str(
        r#"      </table>
      <p><h4>Click on one of the links below to auto generate a request to the backend as a real user or a tester</h4></p>
      <p><a href="/productpage?u=normal">Normal user</a></p>
      <p><a href="/productpage?u=test">Test user</a></p>
    </div>
  </div>
</div>
"#,
    );
    page.push_str(FOOT);
    page
}

/// What productpage learned from details and reviews.
pub(crate) struct ProductView<'a> {
    pub user: Option<&'a str>,
    /// `Ok(details)` or `Err(message)`.
    pub details: Result<&'a Value, &'a str>,
    /// `Ok(reviews body)` or `Err(message)`.
    pub reviews: Result<&'a Value, &'a str>,
}

/// The product page, laid out line for line as the original's template rendered it (each
/// blank or space-only line stands where one of its template tags was), so that the page
/// matches Istio 1.4's Bookinfo page goldens.
pub(crate) fn product_page(view: &ProductView<'_>) -> String {
    let mut page = head("Simple Bookstore App");
    page.push_str(
        r##"
<nav class="navbar navbar-inverse navbar-static-top">
  <div class="container">
    <div class="navbar-header">
      <a class="navbar-brand" href="#">BookInfo Sample</a>
    </div>
    "##,
    );
    match view.user {
        Some(user) => {
            let _ = write!(
                page,
                r#"
    <p class="navbar-text navbar-right">
      <i class="glyphicon glyphicon-user" aria-hidden="true"></i>
      <span style="padding-left: 5px;">{} ( <a href="logout">sign out</a> )</span>
    </p>
    "#,
                escape(user)
            );
        }
        None => page.push_str(
            r##"
    <button type="button" class="btn btn-default navbar-btn navbar-right" data-toggle="modal" href="#login-modal">Sign
      in</button>
    "##,
        ),
    }
    page.push_str(
        r##"
  </div>
</nav>

<!---
<div class="navbar navbar-inverse navbar-fixed-top">
  <div class="container">
    <div class="navbar-header pull-left">
      <a class="navbar-brand" href="#">Microservices Fabric BookInfo Demo</a>
    </div>
    <div class="navbar-header pull-right">
      <button type="button" class="navbar-toggle" data-toggle="collapse" data-target=".navbar-collapse">
        <span class="icon-bar"></span>
        <span class="icon-bar"></span>
        <span class="icon-bar"></span>
      </button>
    </div>
    <div class="navbar-collapse collapse">
"##,
    );
    match view.user {
        Some(user) => {
            let _ = write!(
                page,
                r#"
      <a href="logout"><button type="button" class="btn btn-default navbar-btn pull-right">Sign out</button></a>
      <p class="navbar-text pull-right">Signed in as {}</p>
"#,
                escape(user)
            );
        }
        None => page.push_str(
            r##"
      <button type="button" class="btn btn-default navbar-btn pull-right" data-toggle="modal" data-target="#login-modal">Sign in</button>
"##,
        ),
    }
    page.push_str(
        r#"
    </div>
  </div>
</div>
-->

<div id="login-modal" class="modal fade" role="dialog">
  <div class="modal-dialog">
    <div class="modal-content">
      <div class="modal-header">
        <button type="button" class="close" data-dismiss="modal">&times;</button>
        <h4 class="modal-title">Please sign in</h4>
      </div>
      <div class="modal-body">
        <form method="post" action='login' name="login_form">
          <p><input type="text" class="form-control" name="username" id="username" placeholder="User Name"></p>
          <p><input type="password" class="form-control" name="passwd" placeholder="Password"></p>
          <p>
            <button type="submit" class="btn btn-primary">Sign in</button>
            <button type="button" class="btn btn-default" data-dismiss="modal">Cancel</button>
          </p>
        </form>
      </div>
    </div>

  </div>
</div>

<div class="container-fluid">
  <div class="row">
    <div class="col-md-12">
"#,
    );
    let _ = write!(page, "      <h3 class=\"text-center text-primary\">{PRODUCT_TITLE}</h3>\n      \n");
    let _ = write!(page, "      <p>Summary: {PRODUCT_SUMMARY}</p>\n      \n");
    page.push_str("    </div>\n  </div>\n\n  <div class=\"row\">\n    <div class=\"col-md-6\">\n      ");
    match view.details {
        Ok(details) => {
            page.push_str("\n      <h4 class=\"text-center text-primary\">Book Details</h4>\n      <dl>\n");
            for (label, field) in [
                ("Type", "type"),
                ("Pages", "pages"),
                ("Publisher", "publisher"),
                ("Language", "language"),
                ("ISBN-10", "ISBN-10"),
                ("ISBN-13", "ISBN-13"),
            ] {
                let value = match &details[field] {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                let _ = writeln!(page, "        <dt>{label}:</dt>{}", escape(&value));
            }
            page.push_str("      </dl>\n      ");
        }
        Err(message) => {
            page.push_str(
                "\n      <h4 class=\"text-center text-primary\">Error fetching product details!</h4>\n      ",
            );
            let _ = write!(page, "\n      <p>{}</p>\n      \n      ", escape(message));
        }
    }
    page.push_str("\n    </div>\n\n    <div class=\"col-md-6\">\n      ");
    match view.reviews {
        Ok(reviews) => {
            page.push_str("\n      <h4 class=\"text-center text-primary\">Book Reviews</h4>\n      ");
            for review in reviews["reviews"].as_array().into_iter().flatten() {
                render_review(&mut page, review);
            }
            page.push_str("\n      ");
        }
        Err(message) => {
            page.push_str(
                "\n      <h4 class=\"text-center text-primary\">Error fetching product reviews!</h4>\n      ",
            );
            let _ = write!(page, "\n      <p>{}</p>\n      \n      ", escape(message));
        }
    }
    page.push_str("\n    </div>\n  </div>\n</div>\n");
    page.push_str(FOOT);
    page
}

/// One review: its text and reviewer, then its stars in their colour or the ratings error.
fn render_review(page: &mut String, review: &Value) {
    let text = |field: &str| escape(review[field].as_str().unwrap_or_default());
    let _ = write!(
        page,
        "\n      <blockquote>\n        <p>{}</p>\n        <small>{}</small>\n        ",
        text("text"),
        text("reviewer")
    );
    let rating = &review["rating"];
    if rating.is_object() {
        page.push_str("\n        ");
        if let Some(stars) = rating["stars"].as_u64().filter(|stars| *stars > 0) {
            let stars = stars.min(5);
            let color = escape(rating["color"].as_str().unwrap_or("black"));
            let _ = write!(page, "\n        <font color=\"{color}\">\n          <!-- full stars: -->\n          ");
            for _ in 0..stars {
                page.push_str("\n          <span class=\"glyphicon glyphicon-star\"></span>\n          ");
            }
            page.push_str("\n          <!-- empty stars: -->\n          ");
            for _ in stars..5 {
                page.push_str("\n          <span class=\"glyphicon glyphicon-star-empty\"></span>\n          ");
            }
            page.push_str("\n        </font>\n        ");
        } else if let Some(error) = rating["error"].as_str() {
            let _ = write!(page, "\n        <p><i>{}</i></p>\n        ", escape(error));
        }
        page.push_str("\n        ");
    }
    page.push_str("\n      </blockquote>\n      ");
}

/// The stylesheet served at the page's Bootstrap path when Bootstrap is not installed: enough
/// layout for the page, and the star glyphs as text characters.
pub(crate) const STYLESHEET: &str = r#"body { font-family: "Helvetica Neue", Helvetica, Arial, sans-serif; margin: 0; color: #333; }
.navbar { background: #222; color: #9d9d9d; padding: 10px 20px; overflow: hidden; }
.navbar-brand { color: #9d9d9d; text-decoration: none; font-size: 18px; }
.navbar-right { float: right; margin: 0; }
.modal { display: none; }
.container-fluid, .container { padding: 0 15px; }
.row { display: flex; flex-wrap: wrap; }
.col-md-12 { flex: 0 0 100%; }
.col-md-6 { flex: 0 0 50%; }
.text-center { text-align: center; }
.text-primary { color: #337ab7; }
blockquote { border-left: 5px solid #eee; margin: 0 0 20px; padding: 10px 20px; }
.glyphicon-star:before { content: "\2605"; }
.glyphicon-star-empty:before { content: "\2606"; }
.glyphicon-user:before { content: "\263A"; }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stars_are_drawn_in_their_colour_and_errors_in_italics() {
        let details = json!({"type": "paperback", "pages": 200});
        let reviews = json!({"reviews": [
            {"reviewer": "Reviewer1", "text": "good", "rating": {"stars": 5, "color": "red"}},
            {"reviewer": "Reviewer2", "text": "ok", "rating": {"stars": 4, "color": "red"}}]});
        let page = product_page(&ProductView { user: Some("jason"), details: Ok(&details), reviews: Ok(&reviews) });
        assert!(page.contains("<title>Simple Bookstore App</title>"));
        assert_eq!(page.matches("<font color=\"red\">").count(), 2);
        assert_eq!(page.matches("glyphicon-star\"").count(), 9);
        assert_eq!(page.matches("glyphicon-star-empty").count(), 1);
        assert!(page.contains("jason ( <a href=\"logout\">sign out</a> )"));
        assert!(page.contains("<dt>Pages:</dt>200"));

        let unavailable = json!({"reviews": [{"reviewer": "Reviewer1", "text": "t",
            "rating": {"error": "Ratings service is currently unavailable"}}]});
        let page = product_page(&ProductView { user: None, details: Err(DETAILS_ERROR), reviews: Ok(&unavailable) });
        assert!(page.contains("<p><i>Ratings service is currently unavailable</i></p>"));
        assert!(page.contains("Error fetching product details!"));
        assert!(page.contains("Sign in"));
        let page = product_page(&ProductView { user: Some("<b>"), details: Ok(&details), reviews: Err(REVIEWS_ERROR) });
        assert!(page.contains("Error fetching product reviews!") && page.contains(REVIEWS_ERROR));
        assert!(page.contains("&lt;b&gt;"));
    }
}
