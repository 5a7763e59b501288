package browser

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/chromedp/chromedp"
)

// SubmitForm fills in and submits an HTML form the way a user would: it
// loads url in tab, waits for the button matched by the CSS selector button,
// sets each field (an element with that name attribute) to its value, clicks
// the button and waits until the page it leads to has loaded, following
// redirects wherever they go (such as a loopback URL served by another
// process). It returns that page's location and its body's innerText.
//
// Every wait is bounded only by tab: give it a deadline. Errors name the
// step and the selector that failed.
func SubmitForm(tab context.Context, url string, fields map[string]string, button string) (finalURL, bodyText string, err error) {
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		return "", "", stepError(tab, fmt.Sprintf("load %s", url), err)
	}
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(button))); err != nil {
		return "", "", stepError(tab, fmt.Sprintf("wait for button %s on %s", button, url), err)
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		sel := "[name=" + cssString(name) + "]"
		if err := chromedp.Do(tab, chromedp.SetValue(chromedp.CSS(sel), fields[name])); err != nil {
			return "", "", stepError(tab, fmt.Sprintf("set field %s", sel), err)
		}
	}
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(button))); err != nil {
		return "", "", stepError(tab, fmt.Sprintf("click %s and load the next page", button), err)
	}
	finalURL, err = chromedp.Run(tab, chromedp.Location())
	if err != nil {
		return "", "", stepError(tab, "read the location after submitting", err)
	}
	bodyText, err = chromedp.Run(tab, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "", "", stepError(tab, fmt.Sprintf("read the body of %s", finalURL), err)
	}
	return finalURL, bodyText, nil
}

// stepError wraps err with the step that failed and, when tab ended for a
// reason of its own (a deadline with a cause, a tab that never opened), that
// reason.
func stepError(tab context.Context, step string, err error) error {
	if cause := context.Cause(tab); cause != tab.Err() && !errors.Is(err, cause) {
		return fmt.Errorf("%s: %w (%v)", step, err, cause)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// cssString quotes s as a CSS string.
func cssString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\a `).Replace(s) + `"`
}
